# The C extension built from _stheader.c: git_theta/checkpoints/safetensors.py's entry matcher.

def match_entries(
    header: bytes, start: int, end: int, dtypes: dict[str, tuple[int, int]], max_tensors: int, max_tensor_bytes: int
) -> list[tuple[str, str, tuple[int, ...], int, int]] | None: ...
