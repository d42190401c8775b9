# The C extension built from _metaparse.c; git_theta/metaparse.py is its typed wrapper.
from collections.abc import Callable
from typing import Any

from typing_extensions import Buffer

def bind(
    entry_cls: type[Any],
    entry_fields: tuple[str, ...],
    link_cls: type[Any],
    link_fields: tuple[str, ...],
    max_links: int,
    max_ndim: int,
    max_elements: int,
) -> bool: ...
def parse_params(
    body: Buffer, itemsize: dict[str, int], packed_ok: bool, shapes: dict[Any, Any], keep: bool
) -> dict[str, Any] | None: ...
def serialize_params(
    head: bytes, names: list[str], params: dict[str, Any], tail: bytes, quote: Callable[[str], str]
) -> bytes | None: ...
