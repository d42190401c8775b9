"""The parameter lines of canonical metadata, parsed by the C extension git_theta._metaparse.

metadata._parse_canonical hands the lines between `"params":{` and `}}` to the parser `bind` returns: a dict of
entries when the text is exactly what Metadata.serialize writes (~1 us an entry instead of ~14), else None, and the
Python path, the reference, parses the text and gives any error. Without the extension, or when the entry classes
are not the frozen slots dataclasses the C code fills in, `bind` gives None and the Python path does all the work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from typing_extensions import Buffer

_bind: Callable[..., bool] | None
_parse_params: Callable[..., Any] | None
try:
    from git_theta._metaparse import bind as _bind
    from git_theta._metaparse import parse_params as _parse_params
except ImportError:
    _bind = _parse_params = None

IMPLEMENTATION = "python" if _bind is None else "c"

Entry = TypeVar("Entry")
Shapes = dict[tuple[int, ...], tuple[int, ...]]

ENTRY_FIELDS = ("dtype", "shape", "hash", "stored")
LINK_FIELDS = ("update", "object", "size", "offset", "length")


def bind(
    entry_cls: type[Entry],
    link_cls: type[Any],
    itemsize: dict[str, int],
    max_links: int,
    max_ndim: int,
    max_elements: int,
) -> Callable[[Buffer, bool, Shapes, bool], dict[str, Entry] | None] | None:
    """The compiled parser building `entry_cls`/`link_cls` objects, or None when it cannot build them exactly as
    their __init__ would (or was not built). `itemsize` is the dict of known dtypes, whose own key objects the
    entries get; the limits are metadata.py's, checked as the Python path checks them.

    The parser takes (body, packed_ok, shapes, keep) and gives the entries by name in file order (an empty dict
    with keep False), or None; `shapes` maps each shape to the one tuple all its entries share."""
    if _bind is None or _parse_params is None:
        return None
    if not _plain_dataclass(entry_cls, ENTRY_FIELDS) or not _plain_dataclass(link_cls, LINK_FIELDS):
        return None
    if not _bind(entry_cls, ENTRY_FIELDS, link_cls, LINK_FIELDS, max_links, max_ndim, max_elements):
        return None
    parse_params = _parse_params

    def parse(body: Buffer, packed_ok: bool, shapes: Shapes, keep: bool) -> dict[str, Entry] | None:
        result: dict[str, Entry] | None = parse_params(body, itemsize, packed_ok, shapes, keep)
        return result

    return parse


def _plain_dataclass(cls: type[Any], fields: tuple[str, ...]) -> bool:
    """A frozen slots dataclass of exactly these fields, in this order, whose __init__ only stores them (no
    __post_init__, no __new__ of its own); the C side checks the slots themselves."""
    params = getattr(cls, "__dataclass_params__", None)
    return (
        params is not None
        and params.frozen
        and params.init
        and getattr(cls, "__slots__", None) == fields
        and tuple(f.name for f in dataclasses.fields(cls) if f.init) == fields
        and len(dataclasses.fields(cls)) == len(fields)
        and not hasattr(cls, "__post_init__")
        and "__new__" not in vars(cls)
    )
