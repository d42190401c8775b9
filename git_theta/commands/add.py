"""git theta add: stage checkpoint files (runs `git add`, which runs the clean filter).

With --update-type and --update-data, first applies a side-loaded update
(LoRA factors, IA3 vectors or sparse entries, PEFT naming) to the checkpoint:
the file is rewritten with the exact values checkout will give, and the
parameters are stored as that update on top of their current version.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from git_theta import git, snapshots
from git_theta.errors import ThetaError
from git_theta.repo import Repo
from git_theta.sideload import apply as sideload


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "add", help="stage checkpoint files, optionally applying an update file", description=__doc__
    )
    parser.add_argument("paths", nargs="+", metavar="PATH")
    # Not argparse choices: plugins may add side-loadable types; sideload names the ones that are.
    parser.add_argument(
        "--update-type",
        metavar="TYPE",
        help=(
            "apply the update file as this type: low-rank, ia3, sparse or a plugin's (needs --update-data and one PATH)"
        ),
    )
    parser.add_argument(
        "--update-data",
        type=Path,
        metavar="FILE",
        help="safetensors or torch file with the update's tensors (PEFT names; see docs/updates.md)",
    )
    parser.add_argument(
        "--lora-alpha",
        type=float,
        metavar="ALPHA",
        help=(
            "LoRA alpha of every module (scale = alpha / r); default: alpha_pattern, else lora_alpha of "
            "adapter_config.json beside FILE, else r"
        ),
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.update_type is None:
        if args.update_data is not None or args.lora_alpha is not None:
            raise ThetaError("--update-data and --lora-alpha need --update-type")
        git.run("add", "--", *args.paths)
        return 0
    if args.update_data is None or len(args.paths) != 1:
        raise ThetaError("--update-type needs --update-data FILE and exactly one PATH")
    if args.lora_alpha is not None and args.update_type != "low-rank":
        raise ThetaError("--lora-alpha only applies to --update-type low-rank")
    root = git.toplevel()
    path = snapshots.repo_paths(root, args.paths[:1])[0]
    entries, replaced = sideload.stage(
        repo=Repo.discover(root),
        path=path,
        update_type=args.update_type,
        update_file=args.update_data,
        alpha=args.lora_alpha,
    )
    stored = sum(entry.stored[-1].stored_bytes for entry in entries.values())
    saved = f", {len(replaced)} replaced by the adapter's saved modules" if replaced else ""
    print(
        f"{path}: {len(entries)} parameter(s) updated with {args.update_type} updates ({stored} bytes stored)"
        f"{saved}, staged"
    )
    return 0
