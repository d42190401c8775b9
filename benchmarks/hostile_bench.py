"""Peak memory and time of the worst hostile inputs found so far, each a few KB, through real git.

    python3 benchmarks/hostile_bench.py            # a Markdown table: case, command, exit code, peak RSS, wall, CPU

Each case is refused (or, where noted, accepted within bounds); before the trust fixes these inputs cost
gigabytes or minutes. Peak RSS is git's and every descendant's it reaped (the filters), measured by
benchmarks/maxrss.py, so the test process's own memory never counts. The bounds the tests assert for the same
inputs are in tests/checkpoints/hostile_test.py, tests/metadata_hostile_test.py and tests/hostile/.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "b",
    "GIT_AUTHOR_EMAIL": "b@example.com",
    "GIT_COMMITTER_NAME": "b",
    "GIT_COMMITTER_EMAIL": "b@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(repo: Path, *args: str, input: bytes | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, env=ENV, input=input, capture_output=True, check=True
    ).stdout.decode()


def new_repo(root: Path, name: str) -> Path:
    repo = root / name
    repo.mkdir()
    git(repo, "init", "-q")
    subprocess.run(["git-theta", "install", "--local"], cwd=repo, env=ENV, check=True, capture_output=True)
    subprocess.run(["git-theta", "track", "*.safetensors", "*.pt"], cwd=repo, env=ENV, check=True, capture_output=True)
    git(repo, "add", ".gitattributes")
    git(repo, "commit", "-q", "-m", "track")
    return repo


def safetensors_declaring_2_gib(repo: Path) -> list[str]:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1 << 29], "data_offsets": [0, 1 << 31]}}).encode()
    (repo / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(4096))
    return ["git", "add", "model.safetensors"]


def pickle_sharing_lists_20_levels(repo: Path) -> list[str]:
    import torch

    shared: list[object] = []
    for _ in range(20):
        shared = [shared, shared]
    torch.save({"w": torch.zeros(4), "config": shared}, repo / "model.pt")
    return ["git", "add", "model.pt"]


def committed_metadata(repo: Path, data: bytes) -> list[str]:
    blob = git(repo, "hash-object", "-w", "--stdin", input=data).strip()
    git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},model.safetensors")
    git(repo, "commit", "-q", "-m", "hostile metadata")
    return ["git", "checkout", "HEAD", "--", "model.safetensors"]


def metadata_nested_100k_deep(repo: Path) -> list[str]:
    deep = b"[" * 100_000 + b"]" * 100_000
    data = b'{"version":"git-theta/1",\n"format":"safetensors",\n"file":{"x":' + deep + b'},\n"params":{\n}}\n'
    return committed_metadata(repo, data)


def metadata_with_a_million_links(repo: Path) -> list[str]:
    link = '{"object":"' + "a" * 64 + '","size":1,"update":"dense"}'
    entry = '{"dtype":"F32","hash":"' + "b" * 64 + '","shape":[1],"stored":[' + ",".join([link] * 1_000_000) + "]}"
    data = (
        '{"version":"git-theta/1",\n"format":"safetensors",\n"file":{},\n"params":{\n"w":' + entry + "\n}}\n"
    ).encode()
    return committed_metadata(repo, data)


CASES: dict[str, Callable[[Path], list[str]]] = {
    "safetensors declaring a 2 GiB tensor (4 KB file)": safetensors_declaring_2_gib,
    ".pt whose pickle shares lists 20 levels deep": pickle_sharing_lists_20_levels,
    "committed metadata nested 100,000 deep": metadata_nested_100k_deep,
    "committed metadata, one chain of 1,000,000 links (76 MB)": metadata_with_a_million_links,
}


def measure(command: list[str], repo: Path) -> tuple[int, float, float, float]:
    """(exit code, peak RSS MB, wall s, CPU s) of `command` and the descendants it reaps."""
    with tempfile.NamedTemporaryFile("r") as out:
        start = time.monotonic()
        code = subprocess.run(
            [sys.executable, "-S", "-I", str(HERE / "maxrss.py"), out.name, "run", *command],
            cwd=repo,
            env=ENV,
            capture_output=True,
        ).returncode
        wall = time.monotonic() - start
        _, rss_kb, cpu = out.read().split()
    return code, int(rss_kb) / 1024, wall, float(cpu)


def main() -> int:
    print("| hostile input | command | exit | peak RSS | wall | CPU |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="theta-hostile-bench-") as root:
        for number, (label, make) in enumerate(CASES.items()):
            repo = new_repo(Path(root), f"case{number}")
            command = make(repo)
            code, rss, wall, cpu = measure(command, repo)
            print(f"| {label} | `{' '.join(command)}` | {code} | {rss:.0f} MB | {wall:.1f} s | {cpu:.1f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
