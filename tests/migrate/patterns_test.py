"""--include / --exclude patterns match paths as .gitattributes does."""

from __future__ import annotations

import pytest

from git_theta.migrate import patterns


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
