"""In-process CPU cost of metadata.parse and Metadata.serialize per entry (issue 12).

    python3 benchmarks/metadata_parse_bench.py                             # 10,000 / 100,000 / 1,000,000 entries
    python3 benchmarks/metadata_parse_bench.py --counts 10000 --runs 5
    python3 benchmarks/metadata_parse_bench.py --python                    # the Python code alone, for comparison
    python3 benchmarks/metadata_parse_bench.py --cli-gc                    # with the git-theta command's gc thresholds

Each entry is a 32x32 F32 tensor with one dense link into a pack object (git-theta/2 metadata, as a commit of many
small tensors writes it): its own hash, 1,000 members per pack. CPU seconds by time.process_time, the best of
--runs runs; the machine is shared, so compare instruction counts (valgrind --tool=callgrind) when times swing.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Callable
from functools import partial

from git_theta import main as main_module
from git_theta import metadata
from git_theta.metadata import Metadata, ParamEntry, StoredLink

MEMBER = 4096 + 64  # a 32x32 F32 tensor's dense object, roughly


def build(count: int) -> bytes:
    params = {}
    for i in range(count):
        pack = hashlib.sha256(b"pack %d" % (i // 1000)).hexdigest()
        link = StoredLink("dense", pack, 1000 * MEMBER, (i % 1000) * MEMBER, MEMBER)
        params[f"model.layers.{i}.weight"] = ParamEntry("F32", (32, 32), hashlib.sha256(b"%d" % i).hexdigest(), (link,))
    return Metadata("safetensors", {}, params).serialize()


def best(runs: int, step: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.process_time()
        step()
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--counts", default="10000,100000,1000000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--python", action="store_true", help="turn the compiled parser and writer off")
    parser.add_argument("--cli-gc", action="store_true", help="the collector thresholds the git-theta command sets")
    args = parser.parse_args()
    if args.python:
        metadata._compiled_params = metadata._compiled_serialize = None
    if args.cli_gc:
        main_module.tune_gc()
    print(f"parser and writer: {'python' if metadata._compiled_params is None else 'c'}")
    for count in map(int, args.counts.split(",")):
        text = build(count)
        if len(text) > metadata.MAX_BYTES:
            # ~271 bytes a line: 1,000,000 packed entries are over the limit, which parse refuses before any line
            print(f"{count} entries: {len(text)} bytes, over MAX_BYTES; lifted for this measurement")
            metadata.MAX_BYTES = len(text)
        parsed = metadata.parse(text)
        assert len(parsed.params) == count
        parse_s = best(args.runs, partial(metadata.parse, text))
        check_s = best(args.runs, partial(metadata.parse, text, keep=False))
        serialize_s = best(args.runs, parsed.serialize)
        print(
            f"{count:>9} entries: parse {parse_s / count * 1e6:6.2f} us/entry, parse keep=False "
            f"{check_s / count * 1e6:6.2f} us/entry, serialize {serialize_s / count * 1e6:6.2f} us/entry"
        )


if __name__ == "__main__":
    main()
