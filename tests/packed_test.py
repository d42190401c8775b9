"""The file section's `packed` map: well-formed entries are read, anything else is ignored (the format refuses it)."""

from __future__ import annotations

from git_theta.packed import Packed, packed


def test_entries_and_their_description() -> None:
    found = packed({"skeleton": {}, "packed": {"q": {"shape": [4096, 11008], "type": "Q4_K"}}})
    assert found == {"q": Packed("Q4_K", (4096, 11008))}
    assert found["q"].describe() == "Q4_K [4096,11008]"


def test_malformed_entries_and_sections_are_ignored() -> None:
    assert packed(None) == packed({}) == packed({"packed": [1, 2]}) == {}
    section = {
        "packed": {
            "a": "Q8_0",
            "b": {"type": 3, "shape": [1]},
            "c": {"type": "Q8_0", "shape": [-1]},
            "d": {"type": "Q8_0", "shape": [True]},
            "e": {"type": "Q8_0", "shape": [2]},
        }
    }
    assert packed(section) == {"e": Packed("Q8_0", (2,))}
