"""git_theta.redact: no password, token or signature of a URL survives into a message, a repr or a crash log."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from git_theta import redact

SECRET = "s3cr3t-T0KEN"


@pytest.mark.parametrize(
    "url, shown",
    [
        (f"https://alice:{SECRET}@example.com/org/repo.git/info/lfs", "https://example.com/org/repo.git/info/lfs"),
        (f"https://{SECRET}@github.com:8443/o/r", "https://github.com:8443/o/r"),
        (f"http://a%40b:{SECRET}@127.0.0.1:99/x", "http://127.0.0.1:99/x"),
        (
            f"https://s3.example.com/b/o?X-Amz-Credential={SECRET}&X-Amz-Signature={SECRET}&part=2",
            "https://s3.example.com/b/o?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&part=2",
        ),
        (
            f"https://blob.example.com/c?sv=2020&sig={SECRET}&se=2030",
            "https://blob.example.com/c?sv=REDACTED&sig=REDACTED&se=REDACTED",
        ),
        (f"https://h/x?access_token={SECRET}#frag", "https://h/x?access_token=REDACTED#frag"),
        ("https://h/x?page=2", "https://h/x?page=2"),
        (f"http://u:{SECRET}@h:notaport/x", "http://h:notaport/x"),
    ],
)
def test_url(url: str, shown: str) -> None:
    assert redact.url(url) == shown
    assert SECRET not in redact.text(f"error: cannot reach {url}: refused")


def test_text_redacts_every_url_and_authorization_headers() -> None:
    message = (
        f"'http://a:{SECRET}@h1/x' then https://h2/y?token={SECRET} "
        f"{{'Authorization': 'Basic {SECRET}'}} Authorization: Bearer {SECRET}"
    )
    assert SECRET not in redact.text(message)
    assert "h1/x" in redact.text(message) and "h2/y?token=REDACTED" in redact.text(message)


def test_one_line_shows_control_characters_instead_of_obeying_them() -> None:
    shown = redact.one_line("bad\ngit-theta: error: forged\x1b[2J" + "x" * 1000)
    assert "\n" not in shown and "\x1b" not in shown and len(shown) <= 303
    assert "\\ngit-theta: error: forged\\x1b[2J" in shown


def test_a_crash_report_and_its_log_are_redacted(tmp_path: Path) -> None:
    """A bug whose exception quotes a URL with a token: neither the printed line nor the crash log shows it."""
    program = (
        "import sys\nfrom git_theta import main\n"
        "try:\n"
        f"    raise RuntimeError('cannot open https://bob:{SECRET}@h/x?sig={SECRET}')\n"
        "except RuntimeError:\n"
        "    sys.exit(main._report_bug())\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 3
    assert SECRET not in result.stderr and "https://h/x?sig=REDACTED" in result.stderr
    match = re.search(r"the traceback is in (\S+);", result.stderr)
    assert match, result.stderr
    log = Path(match[1]).read_text()
    assert "RuntimeError" in log and SECRET not in log
