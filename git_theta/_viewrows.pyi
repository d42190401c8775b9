# The C extension built from _viewrows.c (used by git_theta/display/view.py).

def member_rows(
    lines: list[bytes],
    bits: dict[str, int],
    max_elements: int,
    max_links: int,
    widths: tuple[int, int, int, int, int, int],
) -> list[tuple[str, str, int, int] | None]: ...
def block_view(
    data: bytes,
    start: int,
    stop: int,
    bits: dict[str, int],
    max_elements: int,
    max_links: int,
    widths: tuple[int, int, int, int, int, int],
) -> tuple[str, int, int, int] | None: ...
