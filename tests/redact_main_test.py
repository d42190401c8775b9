"""Every error line git-theta prints is redacted, also when the secret comes from git's own output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import git, theta
from safetensors.numpy import save_file


def test_a_token_in_a_remote_url_never_appears_in_an_error(repo: Path) -> None:
    # `git theta push` to a remote whose URL carries a token, on a host that does not exist: whatever fails and
    # whatever git says about it, the token is not shown
    save_file({"w": np.ones(4, dtype=np.float32)}, repo / "model.safetensors")
    git(repo, "add", "model.safetensors")
    git(repo, "commit", "-q", "-m", "model")
    git(repo, "remote", "add", "origin", "http://alice:s3cr3t-token@127.0.0.1:9/team/model.git")
    result = theta(repo, "push", "origin", "main", check=False)
    assert result.returncode == 1 and "127.0.0.1:9" in result.stderr
    assert "s3cr3t-token" not in result.stdout + result.stderr
    result = theta(repo, "fetch", "origin", "no-such-rev", check=False)
    assert result.returncode == 1
    assert "s3cr3t-token" not in result.stdout + result.stderr
