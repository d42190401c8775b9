"""A Hugging Face model repository, end to end, checked by transformers itself.

A small real BERT (random weights, made here) saved by `save_pretrained` as sharded safetensors with an index, its
tokenizer, HF's default .gitattributes, two commits through git-lfs -> `git theta migrate import` -> push to a
giftless server on 127.0.0.1 -> fresh clone -> `AutoModel.from_pretrained(clone)` gives outputs identical
(torch.equal) to the original model's, for the last commit and, after checking out the shards of the first, for it.
No network: HF_HUB_OFFLINE=1 and every path is local.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import git, theta
from migrate_support import HF_DEFAULT

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "model", "is", "under", "version", "control", "git"]
SENTENCES = ["the model is under version control", "git", "control the model"]


def _outputs(model: torch.nn.Module, tokenizer: object) -> list[torch.Tensor]:
    with torch.no_grad():
        batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")  # type: ignore[operator]
        out = model(**batch)
    return [out.last_hidden_state, out.pooler_output]


def test_a_migrated_transformers_repository_loads_with_from_pretrained_after_a_fresh_clone(
    tmp_path: Path, lfs_server: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel, BertTokenizer

    git(tmp_path, "lfs", "install")
    theta(tmp_path, "install")
    repo, origin, clone = tmp_path / "model", tmp_path / "origin.git", tmp_path / "clone"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / ".gitattributes").write_text(HF_DEFAULT)
    (tmp_path / "vocab.txt").write_text("".join(f"{word}\n" for word in VOCAB))
    BertTokenizer(str(tmp_path / "vocab.txt")).save_pretrained(str(repo))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
    )
    model = BertModel(config).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(repo))
    expected = []
    for version in (1, 2):
        if version == 2:  # a fine-tune of one layer: the other shards keep their tensors
            with torch.no_grad():
                model.encoder.layer[1].output.dense.weight.add_(0.01)
        model.save_pretrained(str(repo), safe_serialization=True, max_shard_size="40KB")
        expected.append(_outputs(model, tokenizer))
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"v{version}")
    assert not torch.equal(expected[0][0], expected[1][0])  # the two versions are told apart
    index = json.loads((repo / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 2, shards  # sharded, with an index
    assert git(repo, "cat-file", "-p", f"HEAD:{shards[0]}").stdout.startswith("version https://git-lfs")

    theta(repo, "migrate", "import")
    url = lfs_server.url  # type: ignore[attr-defined]
    git(repo, "config", "lfs.url", url)
    git(repo, "remote", "add", "origin", str(origin))
    git(repo, "push", "-q", "origin", "HEAD")
    git(tmp_path, "clone", "-q", "-c", f"lfs.url={url}", str(origin), str(clone))
    assert json.loads(git(clone, "show", f"HEAD:{shards[0]}").stdout)  # git-theta metadata, not an LFS pointer

    for version, rev in ((2, "HEAD"), (1, "HEAD~1")):
        git(clone, "checkout", rev, "--", *shards)  # the older version's objects are fetched when needed
        loaded = AutoModel.from_pretrained(str(clone)).eval()
        got = _outputs(loaded, AutoTokenizer.from_pretrained(str(clone)))
        assert all(torch.equal(a, b) for a, b in zip(got, expected[version - 1])), f"v{version}"
