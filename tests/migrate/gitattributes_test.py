"""The root .gitattributes lines switch to git-theta's and back exactly."""

from __future__ import annotations

from git_theta import attributes
from git_theta.migrate import gitattributes


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
