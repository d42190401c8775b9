"""ONNX models through git-theta and plain git-lfs: a model with inline initializers and one with external data.

    python3 benchmarks/onnx_bench.py               # ~400 MB of fp32 initializers per model
    python3 benchmarks/onnx_bench.py --mb 20       # seconds, while developing

Each tool gets a fresh repo per case (runner.ToolRepo, the filter wrapped by maxrss.py), tracking `*.onnx` and
`*.data`. Version 1 has 40 initializers of N(0, 1) x 0.02; version 2 adds N(0, 1) x 0.002 to every tenth one.
Rows: wall time of `git add` + `git commit` for v1 and v2, of `git checkout HEAD~1 -- <files>` with the files
deleted (the result is compared byte for byte with v1), store bytes after v1 and their growth for v2, and the
filter's peak RSS over the first add.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import runner

TENSORS = 40
COLUMNS = 1024


def model(mb: float, version: int) -> onnx.ModelProto:
    rows = max(1, int(mb * (1 << 20) / 4 / TENSORS / COLUMNS))
    initializers, nodes, outputs = [], [], []
    for index in range(TENSORS):
        values = np.random.default_rng(index).normal(size=(rows, COLUMNS)).astype(np.float32) * 0.02
        if version == 2 and index % 10 == 0:
            values += np.random.default_rng(1000 + index).normal(size=values.shape).astype(np.float32) * 0.002
        initializers.append(numpy_helper.from_array(values, f"w{index}"))
        nodes.append(helper.make_node("Identity", [f"w{index}"], [f"y{index}"]))
        outputs.append(helper.make_tensor_value_info(f"y{index}", TensorProto.FLOAT, [rows, COLUMNS]))
    graph = helper.make_graph(nodes, "bench", [], outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def save(proto: onnx.ModelProto, folder: Path, external: bool) -> list[str]:
    if not external:
        onnx.save_model(proto, str(folder / "model.onnx"))
        return ["model.onnx"]
    (folder / "model.data").unlink(missing_ok=True)  # onnx appends to an existing data file
    onnx.save_model(proto, str(folder / "model.onnx"), save_as_external_data=True, location="model.data")
    return ["model.onnx", "model.data"]


def run_case(external: bool, tool: str, mb: float, workdir: Path, env: dict[str, str]) -> dict[str, Any]:
    repo = runner.ToolRepo(tool, workdir / f"{'external' if external else 'inline'}-{tool}", env)
    repo.setup()
    if tool == "theta":
        runner.run([runner.theta_executable(), "track", "*.onnx", "*.data"], repo.path, env)
    else:
        repo.git("lfs", "track", "*.onnx", "*.data")
    repo.git("add", ".gitattributes")
    repo.git("commit", "-q", "-m", "track onnx")
    repo.filter_usage()
    result: dict[str, Any] = {}
    files = save(model(mb, 1), repo.path, external)
    originals = {name: (repo.path / name).read_bytes() for name in files}
    result["file MB"] = sum(len(data) for data in originals.values()) / 1e6
    result["add+commit v1 s"] = repo.git("add", *files).seconds + repo.git("commit", "-q", "-m", "v1").seconds
    result["filter peak RSS MB (add v1)"] = repo.filter_usage()[0] / 1024
    result["store after v1 MB"] = repo.store_bytes() / 1e6
    save(model(mb, 2), repo.path, external)
    result["add+commit v2 s"] = repo.git("add", *files).seconds + repo.git("commit", "-q", "-m", "v2").seconds
    result["store growth v2 MB"] = repo.store_bytes() / 1e6 - result["store after v1 MB"]
    for name in files:
        (repo.path / name).unlink()
    result["checkout v1 s"] = repo.git("checkout", "HEAD~1", "--", *files).seconds
    result["identical"] = all((repo.path / name).read_bytes() == data for name, data in originals.items())
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=400, help="megabytes of initializers per model (default 400)")
    parser.add_argument("--tmpdir", default="/tmp", help="where the temp directory goes (default /tmp)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="onnx-bench-", dir=args.tmpdir) as temp:
        workdir = Path(temp)
        env = runner.git_env(workdir)
        runner.warm_up(env, with_torch=False)
        table = {
            (external, tool): run_case(external, tool, args.mb, workdir, env)
            for external in (False, True)
            for tool in ("lfs", "theta")
        }
    print("| row | inline: git-lfs | inline: git-theta | external data: git-lfs | external data: git-theta |")
    print("| --- | --- | --- | --- | --- |")
    for row in table[(False, "lfs")]:
        cells = [table[key][row] for key in ((False, "lfs"), (False, "theta"), (True, "lfs"), (True, "theta"))]
        print(f"| {row} | " + " | ".join(f"{c:.2f}" if isinstance(c, float) else str(c) for c in cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
