"""Parameter groups a format stores as opaque packed bytes (GGUF's quantized blocks), read from the file section.

A format that keeps a tensor as a U8 group of its exact bytes lists it in its file section under `packed`:
`{"packed": {name: {"type": "Q4_K", "shape": [4096, 4096]}}}` (the tensor's own type name and its logical
shape). Exact things (dedup, xor/dense deltas, ours/theirs/base) work on the bytes as on any group; value
arithmetic (a numeric merge, the numbers of `git theta diff`) would be meaningless on them, so the merge engine
and the diff views read this map, without loading the format plugin. The file section is untrusted: a
malformed entry is ignored here (the format's own reader refuses it at checkout).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Packed:
    type: str
    shape: tuple[int, ...]

    def describe(self) -> str:
        """E.g. "Q4_K [4096,4096]"."""
        return f"{self.type} [{','.join(str(n) for n in self.shape)}]"


def packed(file: Mapping[str, Any] | None) -> dict[str, Packed]:
    """The well-formed entries of a file section's `packed` map."""
    found = file.get("packed") if isinstance(file, Mapping) else None
    if not isinstance(found, Mapping):
        return {}
    result = {}
    for name, value in found.items():
        if (
            not isinstance(value, Mapping)
            or not isinstance(value.get("type"), str)
            or type(value.get("shape")) is not list
        ):
            continue
        if all(type(n) is int and n >= 0 for n in value["shape"]):
            result[name] = Packed(value["type"][:32], tuple(value["shape"][:64]))
    return result
