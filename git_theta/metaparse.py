"""The parameter lines of canonical metadata, read and written by the C extension git_theta._metaparse.

metadata._parse_compiled hands the lines between `"params":{` and `}}` to the parser `bind` returns: a dict of
entries when the text is exactly what Metadata.serialize writes (~1 us an entry instead of ~14), else None, and the
Python path, the reference, parses the text and gives any error. Metadata.serialize has the writer write the lines
of entries it can write byte for byte as the Python code does (else None: the Python code writes them). Without the
extension, or when the entry classes are not the frozen slots dataclasses the C code fills in, `bind` gives None
and the Python path does all the work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

if TYPE_CHECKING:
    from git_theta.tensor import Buffer  # for the checker only: textconv never loads git_theta.tensor (or blake3)

_c_bind: Callable[..., bool] | None
_c_parse: Callable[[Buffer, dict[str, int], bool, dict[Any, Any], bool], dict[str, Any] | None] | None
_c_serialize: Callable[[bytes, list[str], dict[str, Any], bytes, Callable[[str], str]], bytes | None] | None
try:
    from git_theta._metaparse import bind as _c_bind
    from git_theta._metaparse import parse_params as _c_parse
    from git_theta._metaparse import serialize_params as _c_serialize
except ImportError:
    _c_bind = _c_parse = _c_serialize = None

IMPLEMENTATION = "python" if _c_bind is None else "c"

Entry = TypeVar("Entry")
Shapes = dict[tuple[int, ...], tuple[int, ...]]

ENTRY_FIELDS = ("dtype", "shape", "hash", "stored")
LINK_FIELDS = ("update", "object", "size", "offset", "length")


class Compiled(NamedTuple, Generic[Entry]):
    """The compiled reader and writer of parameter lines, bound to the entry classes.

    parse(body, packed_ok, shapes, keep): the entries by name in file order (an empty dict with keep False), or
    None; `shapes` maps each shape to the one tuple all its entries share.
    serialize(head, names, params): head, the lines of params[name] for each name in order as Metadata.serialize
    writes them, and the closing braces; None when serialize would write any of them some other way.
    """

    parse: Callable[[Buffer, bool, Shapes, bool], dict[str, Entry] | None]
    serialize: Callable[[bytes, list[str], dict[str, Entry]], bytes | None]


def bind(
    entry_cls: type[Entry],
    link_cls: type[Any],
    itemsize: dict[str, int],
    quote: Callable[[str], str],
    limits: tuple[int, int, int],
) -> Compiled[Entry] | None:
    """The compiled parser and writer of `entry_cls`/`link_cls` objects, or None when they cannot build them exactly
    as their __init__ would (or were not built). `itemsize` is the dict of known dtypes, whose own key objects the
    entries get; `quote` is serialize's string encoder; the limits are metadata.py's (MAX_LINKS, MAX_NDIM,
    MAX_ELEMENTS), checked as the Python path checks them."""
    c_parse, c_serialize = _c_parse, _c_serialize
    if _c_bind is None or c_parse is None or c_serialize is None:
        return None
    if not _plain_dataclass(entry_cls, ENTRY_FIELDS) or not _plain_dataclass(link_cls, LINK_FIELDS):
        return None
    if not _c_bind(entry_cls, ENTRY_FIELDS, link_cls, LINK_FIELDS, *limits):
        return None

    def parse(body: Buffer, packed_ok: bool, shapes: Shapes, keep: bool) -> dict[str, Entry] | None:
        return c_parse(body, itemsize, packed_ok, shapes, keep)

    def serialize(head: bytes, names: list[str], params: dict[str, Entry]) -> bytes | None:
        return c_serialize(head, names, params, b"}}\n", quote)

    return Compiled(parse, serialize)


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
