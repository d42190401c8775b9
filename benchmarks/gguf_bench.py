"""git-theta against plain git-lfs on a ~1 GB GGUF file (F16 + Q8_0 + Q4_K tensors), through bench.py's runner.

    python3 benchmarks/gguf_bench.py                      # full size, ~1 GB (a few minutes)
    python3 benchmarks/gguf_bench.py --scale 0.001 --json out.json

The file is written by gguf.GGUFWriter, streamed tensor by tensor: LAYERS blocks of three [rows, 4096] tensors
(an F16 attention weight, a Q8_0 FFN weight quantized by gguf.quants from N(0, 1) x 0.02 values, a Q4_K weight
of random block bytes, since gguf-py cannot quantize to Q4_K) plus a 32,000-token vocabulary in the header.
Version 2 changes 10% of the tensors in place (same header): F16 and Q8_0 ones by the usual N(0, 1) x 0.002
perturbation, Q4_K ones by new random blocks. Every other flag, step and row is bench.py's (benchmarks/README.md).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench
import data
import runner

LAYERS = 36
WIDTH = 4096  # ne[0]: a multiple of Q4_K's 256-element blocks
FULL_ROWS = 2048  # 36 x (8192 + 4352 + 2304) x 2048 bytes = 1.02 GiB
VOCABULARY = 32_000
KINDS = ("F16", "Q8_0", "Q4_K")


# kind -> (bytes per row of WIDTH elements, ggml type name, or None for F16 which GGUFWriter types itself)
ROW_BYTES = {"F16": (WIDTH * 2, None), "Q8_0": (WIDTH // 32 * 34, "Q8_0"), "Q4_K": (WIDTH // 256 * 144, "Q4_K")}


def _tensor(kind: str, index: int, rows: int, changed: bool) -> np.ndarray[Any, Any]:
    """The array GGUFWriter writes: F16 values, or the raw uint8 blocks of a quantized tensor."""
    import gguf

    if kind == "Q4_K":
        rng = np.random.default_rng([data.SEED, index, 3 if changed else 1])
        return rng.integers(0, 256, size=(rows, ROW_BYTES[kind][0]), dtype=np.uint8)
    values = data.weights(index, (rows, WIDTH), np.float32)
    if changed:
        values = data.perturbed(values, index)
    if kind == "F16":
        return values.astype(np.float16)
    return np.asarray(gguf.quants.quantize(values, gguf.GGMLQuantizationType.Q8_0))


def _names() -> list[tuple[str, str]]:
    parts = {"F16": "attn_q", "Q8_0": "ffn_up", "Q4_K": "ffn_down"}
    return [(f"blk.{layer}.{parts[kind]}.weight", kind) for layer in range(LAYERS) for kind in KINDS]


def make_gguf(folder: Path, scale: float) -> data.Checkpoint:
    """Streams v1 tensor by tensor (tensor infos first, from sizes alone), so 1 GB never sits in memory."""
    import gguf

    rows = max(1, round(FULL_ROWS * scale))
    v1 = folder / "v1.gguf"
    writer = gguf.GGUFWriter(v1, "llama")
    writer.add_block_count(LAYERS)
    writer.add_token_list([f"tok{i}" for i in range(VOCABULARY)])
    for name, kind in _names():
        row_bytes, raw = ROW_BYTES[kind]
        dtype = np.dtype(np.float16 if raw is None else np.uint8)
        shape = (rows, row_bytes // dtype.itemsize)
        raw_type = None if raw is None else gguf.GGMLQuantizationType[raw]
        writer.add_tensor_info(name, shape, dtype, rows * row_bytes, raw_dtype=raw_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for index, (_, kind) in enumerate(_names()):
        writer.write_tensor_data(_tensor(kind, index, rows, False))
    writer.close()
    return _changed(v1, folder / "v2.gguf", rows)


def _changed(v1: Path, v2: Path, rows: int) -> data.Checkpoint:
    """v2 = v1 with 10% of the tensors rewritten in place (the header stays the same)."""
    import gguf

    shutil.copyfile(v1, v2)
    tensors = gguf.GGUFReader(v1).tensors
    sizes = [int(t.n_bytes) for t in tensors]
    picked = data.pick_changed(sizes, [True] * len(sizes))
    kinds = dict(_names())
    with v2.open("r+b") as out:
        for index in picked:
            out.seek(int(tensors[index].data_offset))
            out.write(_tensor(kinds[tensors[index].name], index, rows, True).tobytes())
    return data.Checkpoint(v1, v2, len(sizes), len(picked), sum(sizes[i] for i in picked))


CASE = bench.Case("g", "mixed GGUF (F16 + Q8_0 + Q4_K)", "model.gguf", make_gguf, 1.0, True)


def main(argv: list[str] | None = None) -> int:
    """bench.py's main with the GGUF case as the only one and `*.gguf` tracked by both tools."""
    bench.CASES["g"] = CASE
    runner.PATTERNS = (*runner.PATTERNS, "*.gguf")
    args = list(sys.argv[1:] if argv is None else argv)
    return bench.main(["--cases", "g", *args])


if __name__ == "__main__":
    sys.exit(main())
