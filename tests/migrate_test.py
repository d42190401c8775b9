"""git theta migrate on a real git-lfs history: import, export back to the same commits, info's measured sizes.

The history is made once per module through git-lfs's own filter (HF-style .gitattributes): a safetensors model
changing a few tensors per commit, a README, a .bin that stays with git-lfs, a side branch merged back; each test
works on a copy.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import GIT_ENV, git, theta
from hostile_support import assert_refused, run_bounded
from transfer.remote_support import write_model

from git_theta import attributes, migrate
from git_theta.migrate import exporting, gitattributes, info, patterns, rewriter
from git_theta.repo import Repo

HF_ATTRIBUTES = """*.7z filter=lfs diff=lfs merge=lfs -text
*.bin filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*tfevents* filter=lfs diff=lfs merge=lfs -text
"""
TENSORS = 8
LOG_FORMAT = "%an%x00%ae%x00%aD%x00%cn%x00%ce%x00%cD%x00%B%x01"


@dataclass
class History:
    root: Path  # the repository as made (never changed)
    home: Path
    models: dict[str, bytes]  # commit subject -> the model file committed then
    refs: str  # `git for-each-ref` of the original


def _env(home: Path, date: str) -> dict[str, str]:
    env = {**os.environ, **GIT_ENV, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = date
    return env


def _commit(repo: Path, home: Path, subject: str, day: int, author: str = "Ann Author <ann@example.com>") -> None:
    env = _env(home, f"2026-02-{day:02d}T10:00:00+02:00")
    subprocess.run(["git", "add", "-A"], cwd=repo, env=env, check=True)
    subprocess.run(
        ["git", "commit", "-q", f"--author={author}", "-m", subject, "-m", "body line\n"], cwd=repo, env=env, check=True
    )


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    home = tmp_path_factory.mktemp("history-home")
    (home / ".gitconfig").write_text(
        "[init]\n\tdefaultBranch = main\n[user]\n\tname = Theta Tester\n\temail = tester@example.com\n"
    )
    repo = tmp_path_factory.mktemp("lfs-history")
    env = _env(home, "2026-02-01T00:00:00+00:00")
    subprocess.run(["git", "init", "-q"], cwd=repo, env=env, check=True)
    subprocess.run(["git", "lfs", "install", "--local"], cwd=repo, env=env, check=True, capture_output=True)
    (repo / ".gitattributes").write_text(HF_ATTRIBUTES)
    (repo / "README.md").write_text("# a model\n")
    _commit(repo, home, "start", 1)
    models = {}
    model = repo / "model.safetensors"
    for subject, changed, day in (("v1", set(), 2), ("v2", {1}, 3), ("v3", {1, 2}, 5)):
        write_model(model, changed, TENSORS, version=day)
        models[subject] = model.read_bytes()
        if subject == "v1":
            (repo / "data.bin").write_bytes(bytes(range(256)) * 8)
        if subject == "v2":
            (repo / "README.md").write_text("# a model\nversion 2\n")
        _commit(repo, home, subject, day)
        if subject == "v2":
            subprocess.run(["git", "tag", "v2-light"], cwd=repo, env=env, check=True)
            subprocess.run(["git", "branch", "side"], cwd=repo, env=env, check=True)
    subprocess.run(
        ["git", "tag", "-a", "v3", "-m", "release 3\n\nnotes"],
        cwd=repo,
        env=_env(home, "2026-02-06T12:00:00-05:00"),
        check=True,
    )
    subprocess.run(["git", "checkout", "-q", "side"], cwd=repo, env=env, check=True)
    write_model(model, {4}, TENSORS, version=4)
    models["side"] = model.read_bytes()
    _commit(repo, home, "side", 4, author="Bo Brother <bo@example.com>")
    subprocess.run(["git", "checkout", "-q", "main"], cwd=repo, env=env, check=True)
    merge_env = _env(home, "2026-02-07T10:00:00+02:00")
    subprocess.run(
        ["git", "merge", "-q", "-s", "ours", "side", "-m", "merge side"], cwd=repo, env=merge_env, check=True
    )
    refs = subprocess.run(["git", "for-each-ref"], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout
    return History(repo, home, models, refs)


@pytest.fixture
def lfs_repo(history: History, tmp_path: Path) -> Path:
    """A copy of the history with git-theta's filter configured in it."""
    repo = tmp_path / "repo"
    shutil.copytree(history.root, repo, symlinks=True)
    theta(repo, "install", "--local")
    return repo


def _log(repo: Path, *revs: str) -> list[str]:
    return git(repo, "log", f"--format={LOG_FORMAT}", "--topo-order", *revs).stdout.split("\x01")


def _subject_commits(repo: Path, rev: str) -> dict[str, str]:
    return dict(reversed(line.split(" ", 1)) for line in git(repo, "log", "--format=%H %s", rev).stdout.splitlines())  # type: ignore[misc]


def _lfs_objects(repo: Path) -> set[str]:
    out = git(repo, "lfs", "ls-files", "--all", "--long").stdout
    return {line.split()[0] for line in out.splitlines()}


def test_import_rewrites_every_commit_and_export_gives_back_the_same_commits(lfs_repo: Path, history: History) -> None:
    before_log = _log(lfs_repo, "--branches", "--tags")
    bin_pointer = git(lfs_repo, "rev-parse", "main:data.bin").stdout
    result = theta(lfs_repo, "migrate", "import", "--everything", "--include", "*.safetensors")
    assert "6 of 6 commit(s) rewritten" in result.stdout, result.stdout
    assert f"kept under {migrate.BACKUP_PREFIX}/import/" in result.stdout

    # authors, committers, dates and messages exactly as they were; every ref moved
    assert _log(lfs_repo, "--branches", "--tags") == before_log
    refs = dict(
        reversed(line.split(" ", 1))
        for line in git(lfs_repo, "for-each-ref", "--format=%(objectname) %(refname)").stdout.splitlines()
    )  # type: ignore[misc]
    old = {line.split()[2]: line.split()[0] for line in history.refs.splitlines()}
    for ref in ("refs/heads/main", "refs/heads/side", "refs/tags/v2-light", "refs/tags/v3"):
        assert refs[ref] != old[ref]
        assert refs[f"{migrate.BACKUP_PREFIX}/import/{ref}"] == old[ref]
    assert git(lfs_repo, "cat-file", "-t", "v3").stdout.strip() == "tag"
    new_tag = git(lfs_repo, "cat-file", "tag", "v3").stdout
    old_tag = git(lfs_repo, "cat-file", "tag", old["refs/tags/v3"]).stdout
    assert new_tag.split("\n", 1)[1] == old_tag.split("\n", 1)[1]  # tagger, date, message: only the object differs
    assert git(lfs_repo, "rev-parse", "v2-light").stdout == git(lfs_repo, "rev-parse", "main~2").stdout
    merge = git(lfs_repo, "rev-parse", "main^1", "main^2").stdout.split()  # the merge keeps both rewritten parents
    assert merge == [git(lfs_repo, "rev-parse", ref).stdout.strip() for ref in ("v3^{commit}", "side")]

    # every version checks out byte-identical through git-theta; the .bin stays a git-lfs pointer
    commits = {**_subject_commits(lfs_repo, "main"), **_subject_commits(lfs_repo, "side")}
    for subject, data in history.models.items():
        blob = git(lfs_repo, "cat-file", "-p", f"{commits[subject]}:model.safetensors").stdout
        assert blob.startswith("{"), blob[:80]  # metadata, not a pointer
        git(lfs_repo, "checkout", commits[subject], "--", "model.safetensors")
        assert (lfs_repo / "model.safetensors").read_bytes() == data, subject
    git(lfs_repo, "checkout", "main", "--", "model.safetensors")
    assert git(lfs_repo, "status", "--porcelain").stdout == ""
    assert git(lfs_repo, "rev-parse", "main:data.bin").stdout == bin_pointer
    assert git(lfs_repo, "show", "main:README.md").stdout == "# a model\nversion 2\n"
    gitattributes = git(lfs_repo, "show", "main:.gitattributes").stdout.splitlines()
    assert gitattributes[0] == attributes.CLONE_HINT
    assert f"*.safetensors {attributes.ATTRIBUTES}" in gitattributes
    assert "*.bin filter=lfs diff=lfs merge=lfs -text" in gitattributes
    assert git(lfs_repo, "show", "main:.gitattributes").stdout.endswith("-text\n")
    assert theta(lfs_repo, "show", "model.safetensors").returncode == 0

    # the way back: the original commits, trees, blobs and tags, byte for byte
    result = theta(lfs_repo, "migrate", "export", "--everything", "--include", "*.safetensors")
    assert "6 of 6 commit(s) rewritten" in result.stdout, result.stdout
    now = git(lfs_repo, "for-each-ref", "refs/heads", "refs/tags").stdout
    assert now == "".join(line + "\n" for line in history.refs.splitlines())
    assert (lfs_repo / "model.safetensors").read_bytes() == history.models["v3"]
    assert git(lfs_repo, "status", "--porcelain").stdout == ""


def test_info_measures_the_store_before_and_after(lfs_repo: Path, history: History) -> None:
    rows = info.info(Repo.discover(lfs_repo), include=["*.safetensors", "data.*"], exclude=["*.bin"], everything=True)
    by = {row.pattern: row for row in rows}
    sizes = {hashlib.sha256(data).hexdigest(): len(data) for data in history.models.values()}
    assert by["*.safetensors"].versions == 4
    assert by["*.safetensors"].lfs_bytes == sum(sizes.values())
    # 8 tensors stored once, then only the 1, 2, 1 changed ones (plus the file data): well under half
    assert 0 < by["*.safetensors"].theta_bytes < by["*.safetensors"].lfs_bytes / 2
    assert (by["data.*"].versions, by["data.*"].lfs_bytes, by["data.*"].theta_bytes) == (0, 0, 0)  # excluded
    out = theta(lfs_repo, "migrate", "info", "--everything", "--include", "*.safetensors").stdout
    assert out.splitlines()[1].split()[:2] == ["*.safetensors", "4"], out
    # a dry run: no ref, no object in the store, nothing in the working tree changed
    assert git(lfs_repo, "for-each-ref", "refs/heads", "refs/tags").stdout.strip() == history.refs.strip()
    assert _lfs_objects(lfs_repo) == set(sizes) | {hashlib.sha256(bytes(range(256)) * 8).hexdigest()}
    assert {p.name for p in (lfs_repo / ".git" / "lfs" / "objects").glob("??/??/*")} == _lfs_objects(lfs_repo)


def test_excluded_paths_and_the_default_branch_only(lfs_repo: Path, history: History) -> None:
    theta(lfs_repo, "migrate", "import", "--include", "*.safetensors,*.bin", "--exclude", "data.bin")
    old = {line.split()[2]: line.split()[0] for line in history.refs.splitlines()}
    # only the current branch moves by default
    for ref in ("refs/heads/side", "refs/tags/v2-light", "refs/tags/v3"):
        assert git(lfs_repo, "rev-parse", ref).stdout.strip() == old[ref]
    assert git(lfs_repo, "rev-parse", "main").stdout.strip() != old["refs/heads/main"]
    assert (
        git(lfs_repo, "rev-parse", "main:data.bin").stdout
        == git(lfs_repo, "rev-parse", f"{old['refs/heads/main']}:data.bin").stdout
    )
    lines = git(lfs_repo, "show", "main:.gitattributes").stdout.splitlines()
    assert f"*.bin {attributes.ATTRIBUTES}" in lines
    assert lines[-1] == "data.bin filter=lfs diff=lfs merge=lfs -text"  # the excluded file stays with git-lfs
    assert git(lfs_repo, "check-attr", "filter", "data.bin").stdout.strip().endswith("lfs")
    assert (lfs_repo / "data.bin").read_bytes() == bytes(range(256)) * 8


def _drop_object(repo: Path, data: bytes) -> str:
    oid = hashlib.sha256(data).hexdigest()
    (repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).unlink()
    return oid


def test_a_missing_object_is_fetched_or_refused_naming_it_and_the_commit(
    lfs_repo: Path, history: History, lfs_server: object
) -> None:
    oid = _drop_object(lfs_repo, history.models["v2"])
    before = git(lfs_repo, "for-each-ref").stdout
    git(lfs_repo, "remote", "add", "origin", "http://127.0.0.1:9/unused.git")
    git(lfs_repo, "config", "lfs.url", lfs_server.url)  # type: ignore[attr-defined]
    (row,) = info.info(Repo.discover(lfs_repo), include=["*.safetensors"], exclude=[], refs=["main"])
    assert (row.versions, row.not_local) == (4, 1)  # main holds side's version too; a dry run fetches nothing
    refused = theta(lfs_repo, "migrate", "import", "--include", "*.safetensors", check=False)
    v2 = _subject_commits(lfs_repo, "main")["v2"]
    assert refused.returncode == 1
    assert refused.stderr.count("git-theta: error:") == 1 and "Traceback" not in refused.stderr
    assert f"model.safetensors: git-lfs object {oid} (commit {v2}) is not in the local store" in refused.stderr
    assert git(lfs_repo, "for-each-ref").stdout == before

    path = lfs_server.object_path(oid)  # type: ignore[attr-defined]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(history.models["v2"])  # as `git lfs push` would have left it
    theta(lfs_repo, "migrate", "import", "--include", "*.safetensors")
    git(lfs_repo, "checkout", "main~2", "--", "model.safetensors")
    assert (lfs_repo / "model.safetensors").read_bytes() == history.models["v2"]


@pytest.fixture
def hung_server() -> Iterator[socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(60)
    yield server
    server.close()


def test_an_interrupted_import_leaves_every_ref_as_it_was(
    lfs_repo: Path, history: History, hung_server: socket.socket
) -> None:
    # not v3's: checked out, so `git status` (git-lfs's clean filter) would store it again
    _drop_object(lfs_repo, history.models["v2"])  # v1 gets converted, then the walk waits on the server
    git(lfs_repo, "remote", "add", "origin", f"http://127.0.0.1:{hung_server.getsockname()[1]}/repo.git")
    before = git(lfs_repo, "for-each-ref").stdout
    head = (lfs_repo / ".git" / "HEAD").read_text()
    process = subprocess.Popen(
        ["git-theta", "migrate", "import", "--everything", "--include", "*.safetensors"],
        cwd=lfs_repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    connection, _ = hung_server.accept()  # the walk is inside commit v2 now
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    connection.close()
    assert process.returncode == 130, err
    assert git(lfs_repo, "for-each-ref").stdout == before
    assert (lfs_repo / ".git" / "HEAD").read_text() == head
    assert git(lfs_repo, "status", "--porcelain").stdout == ""
    assert git(lfs_repo, "cat-file", "-p", "main:model.safetensors").stdout.startswith("version https://git-lfs")


def test_a_file_that_is_not_a_checkpoint_is_refused_in_one_line_naming_it(lfs_repo: Path) -> None:
    before = git(lfs_repo, "for-each-ref").stdout
    result = theta(lfs_repo, "migrate", "info", "--include", "*.bin", check=False)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("git-theta: error: data.bin: not a checkpoint") and "--exclude" in result.stderr
    assert theta(lfs_repo, "migrate", "import", check=False).returncode == 1  # the default: all of git-lfs's patterns
    assert git(lfs_repo, "for-each-ref").stdout == before


@pytest.mark.parametrize("damage", ["flipped", "truncated", "declared-larger"])
def test_a_damaged_lfs_object_or_lying_pointer_is_refused_in_bounded_memory(
    lfs_repo: Path, history: History, damage: str
) -> None:
    oid = hashlib.sha256(history.models["v2"]).hexdigest()
    path = lfs_repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    data = bytearray(history.models["v2"])
    if damage == "flipped":
        data[-1] ^= 1  # still a readable safetensors file: only the sha256 tells
        path.write_bytes(bytes(data))
    elif damage == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:
        # v2's pointer claims 1 TiB: nothing may be allocated for it; the bytes on disk decide
        v2 = _subject_commits(lfs_repo, "main")["v2"]
        pointer = exporting.pointer_text(oid, 1 << 40)
        blob = git(lfs_repo, "hash-object", "-w", "--stdin", input=pointer).stdout.strip()
        tree = git(lfs_repo, "ls-tree", v2).stdout.replace(
            git(lfs_repo, "rev-parse", f"{v2}:model.safetensors").stdout.strip(), blob
        )
        new_tree = git(lfs_repo, "mktree", input=tree.encode()).stdout.strip()
        commit = git(lfs_repo, "commit-tree", new_tree, "-p", v2, "-m", "lying pointer").stdout.strip()
        git(lfs_repo, "branch", "lying", commit)
    before = git(lfs_repo, "for-each-ref").stdout
    refs = ["lying"] if damage == "declared-larger" else ["main"]
    result = run_bounded(["git-theta", "migrate", "import", "--include", "*.safetensors", *refs], cwd=lfs_repo)
    assert_refused(result, ["model.safetensors", oid])
    assert git(lfs_repo, "for-each-ref").stdout == before


# Hugging Face's default .gitattributes for a model repository (the lines a new repo gets; abridged).
HF_DEFAULT = """*.7z filter=lfs diff=lfs merge=lfs -text
*.arrow filter=lfs diff=lfs merge=lfs -text
*.bin filter=lfs diff=lfs merge=lfs -text
*.ckpt filter=lfs diff=lfs merge=lfs -text
*.h5 filter=lfs diff=lfs merge=lfs -text
*.msgpack filter=lfs diff=lfs merge=lfs -text
*.onnx filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*.pth filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
saved_model/**/* filter=lfs diff=lfs merge=lfs -text
*.zip filter=lfs diff=lfs merge=lfs -text
*tfevents* filter=lfs diff=lfs merge=lfs -text
"""


def test_a_hugging_face_shaped_repository_migrates_pushes_and_clones(tmp_path: Path, lfs_server: object) -> None:
    """Config, tokenizer, two safetensors shards and their index, two commits through git-lfs -> import with the
    default patterns -> push (objects to a giftless server) -> a fresh clone holds every shard byte for byte."""
    import json

    import numpy as np
    from safetensors.numpy import load_file, save_file

    git(tmp_path, "lfs", "install")
    theta(tmp_path, "install")
    repo, origin = tmp_path / "model", tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / ".gitattributes").write_text(HF_DEFAULT)
    (repo / "config.json").write_text('{"model_type": "tiny", "hidden_size": 16}\n')
    (repo / "tokenizer.json").write_text('{"version": "1.0", "model": {"vocab": {"a": 0, "b": 1}}}\n')
    shards = {
        "model-00001-of-00002.safetensors": ["embed", "layer0"],
        "model-00002-of-00002.safetensors": ["layer1", "head"],
    }
    weight_map = {name: shard for shard, names in shards.items() for name in names}
    (repo / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}) + "\n")
    versions: list[dict[str, bytes]] = []
    for version in (1, 2):
        for shard, names in shards.items():
            seed = version if shard.startswith("model-00002") else 1  # version 2 changes the second shard only
            rng = np.random.default_rng([seed, len(shard)])
            save_file(
                {n: rng.standard_normal((32, 16)).astype(np.float32) for n in names},
                str(repo / shard),
                {"format": "pt"},
            )
        versions.append({shard: (repo / shard).read_bytes() for shard in shards})
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"v{version}")
    assert git(repo, "cat-file", "-p", f"HEAD:{next(iter(shards))}").stdout.startswith("version https://git-lfs")

    theta(repo, "migrate", "import")  # the default: the patterns HF's .gitattributes routes to git-lfs
    url = lfs_server.url  # type: ignore[attr-defined]
    git(repo, "config", "lfs.url", url)
    git(repo, "remote", "add", "origin", str(origin))
    git(repo, "push", "-q", "origin", "main")
    metadata = [
        json.loads(git(repo, "show", f"{rev}:{shard}").stdout) for rev in ("HEAD", "HEAD~1") for shard in shards
    ]
    needed = {link["object"] for meta in metadata for entry in meta["params"].values() for link in entry["stored"]}
    assert needed <= lfs_server.oids()  # type: ignore[attr-defined]

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "-c", f"lfs.url={url}", str(origin), str(clone))
    for shard, data in versions[1].items():
        assert (clone / shard).read_bytes() == data
    assert (clone / "config.json").read_text() == (repo / "config.json").read_text()
    index = json.loads((clone / "model.safetensors.index.json").read_text())
    loaded = {name: load_file(str(clone / shard))[name] for name, shard in index["weight_map"].items()}
    assert sorted(loaded) == ["embed", "head", "layer0", "layer1"]
    second = "model-00002-of-00002.safetensors"
    git(clone, "checkout", "HEAD~1", "--", second)  # the older version, fetched when needed
    assert (clone / second).read_bytes() == versions[0][second]


def test_progress_names_the_commit_on_a_terminal_only() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    shown, hidden = Terminal(), io.StringIO()
    for stream in (shown, hidden):
        bar = rewriter.CommitProgress("import", stream)
        bar(1, 2)
        bar(2, 2)
    assert shown.getvalue() == "\rgit-theta: migrate import: commit 1/2\rgit-theta: migrate import: commit 2/2\n"
    assert hidden.getvalue() == ""


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("*.safetensors", "model.safetensors", True),
        ("*.safetensors", "weights/shard-1.safetensors", True),  # no slash: the name at any depth
        ("/*.safetensors", "weights/shard-1.safetensors", False),
        ("weights/*.bin", "weights/a.bin", True),
        ("weights/*.bin", "weights/deep/a.bin", False),
        ("weights/**", "weights/deep/a.bin", True),
        ("saved_model/**/*", "saved_model/variables/v.data", True),
        ("**/a.bin", "a.bin", True),
        ("*tfevents*", "runs/events.out.tfevents.1", True),
        ("model-0000[12].safetensors", "model-00002.safetensors", True),
        ("model-0000[!12].safetensors", "model-00002.safetensors", False),
        ("m?.pt", "m1.pt", True),
        ("m?.pt", "m/.pt", False),
    ],
)
def test_patterns_match_as_gitattributes_do(pattern: str, path: str, matches: bool) -> None:
    assert (patterns.Selection([pattern], []).pattern_of(path) == pattern) is matches


def test_attribute_lines_switch_and_switch_back_exactly() -> None:
    original = b"# comment\r\n*.bin filter=lfs diff=lfs merge=lfs -text\r\n"
    original += b"*.safetensors filter=lfs diff=lfs merge=lfs -text\r\n"
    imported = gitattributes.import_attributes(original, ["*.safetensors"], {"*.safetensors"}, set())
    assert imported is not None
    assert imported.split(b"\n") == [
        attributes.CLONE_HINT.encode(),
        b"# comment\r",
        b"*.bin filter=lfs diff=lfs merge=lfs -text\r",
        f"*.safetensors {attributes.ATTRIBUTES}\r".encode(),
        b"",
    ]
    assert gitattributes.export_attributes(imported, ["*.safetensors"]) == original
    # no file before: one only when files were converted, with the hint and the pattern's line
    assert gitattributes.import_attributes(None, ["*.pt"], set(), set()) is None
    created = gitattributes.import_attributes(None, ["*.pt"], {"*.pt"}, set())
    assert created == f"{attributes.CLONE_HINT}\n*.pt {attributes.ATTRIBUTES}\n".encode()
