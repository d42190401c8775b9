"""The compiled parser of parameter lines gives exactly the Python path's entries, or None: never a different result,
never an entry the Python path refuses, and metadata.parse gives the same result or the same error either way."""

from __future__ import annotations

import gc
import pickle
import re
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import git
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from git_theta import dtypes, metadata, metaparse
from git_theta.errors import MetadataError
from git_theta.metadata import Metadata, ParamEntry, StoredLink

GOLDEN = Path(__file__).resolve().parent / "golden"
PARAMS_LINE = b'"params":{\n'
END = b"\n}}\n"
MUTATIONS = settings(
    max_examples=300,
    deadline=None,  # wall time on a shared machine is no signal
    derandomize=True,  # CI sees the same examples every run
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def oid(i: int) -> str:
    return f"{i:064x}"


def link(i: int, packed: bool, update: str = "dense") -> StoredLink:
    return StoredLink(update, oid(i % 3), 1000, (i % 7) * 100, 100) if packed else StoredLink(update, oid(i), 99)


def sample(packed: bool) -> bytes:
    """Metadata as serialize writes it: shapes shared and not, long chains, names JSON escapes and names it needn't."""
    names = ["a.weight", "", " ", "x" * 300, "caf\u00e9", 'q"uote', "back\\slash", "tab\there", "\x7f", "~!@#$%^&*()"]
    params = {}
    for i, name in enumerate(names + [f"layer.{k}.bias" for k in range(20)]):
        chain = (link(i, packed),) + tuple(link(i + k, False, "sparse") for k in range(i % 4 * (i % 5 == 0) * 60))
        shape = [(), (3,), (2, 3), (0, 1 << 40), (1,) * 64][i % 5]
        params[name] = ParamEntry(sorted(dtypes.ITEMSIZE)[i % len(dtypes.ITEMSIZE)], shape, oid(10**6 + i), chain)
    return Metadata("safetensors", {"header": {"object": oid(5), "size": 12}}, params).serialize()


SAMPLES = [sample(False), sample(True), (GOLDEN / "tiny.safetensors.metadata-v2").read_bytes()]


@contextmanager
def python_only() -> Iterator[None]:
    parse, metadata._compiled_params = metadata._compiled_params, None
    write, metadata._compiled_serialize = metadata._compiled_serialize, None
    try:
        yield
    finally:
        metadata._compiled_params, metadata._compiled_serialize = parse, write


def outcome(text: bytes, keep: bool = True) -> tuple[str, Any]:
    try:
        parsed = metadata.parse(text, source="model.safetensors", keep=keep)
    except MetadataError as error:
        return "error", str(error)
    return "ok", list(parsed.params.items())


def split(text: bytes) -> tuple[bytes, bytes]:
    cut = text.index(PARAMS_LINE) + len(PARAMS_LINE)
    assert text.endswith(END)
    return text[:cut], text[cut : -len(END)]


def compiled(text: bytes, keep: bool = True) -> dict[str, ParamEntry] | None:
    assert metadata._compiled_params is not None
    head, body = split(text)
    return metadata._compiled_params(body, head.startswith(b'{"version":"git-theta/2"'), {}, keep)


def check(text: bytes) -> dict[str, ParamEntry] | None:
    """What the compiled parser made of `text`, after checking it against the Python path."""
    with python_only():
        reference, reference_check = outcome(text), outcome(text, keep=False)
    assert outcome(text) == reference
    assert outcome(text, keep=False) == reference_check
    found, checked = compiled(text), compiled(text, keep=False)
    assert (found is None) == (checked is None)
    if found is not None:
        assert checked == {}
        assert reference == ("ok", list(found.items())), "the compiled parser accepted what Python refuses"
        shares_its_objects(found)
    return found


def shares_its_objects(params: dict[str, ParamEntry]) -> None:
    """One tuple per distinct shape, the dtype names of dtypes.ITEMSIZE, interned ids and update names."""
    entries = list(params.values())
    assert len({id(entry.shape) for entry in entries}) == len({entry.shape for entry in entries})
    dtype_names = {name: name for name in dtypes.ITEMSIZE}
    for entry in entries:
        assert entry.dtype is dtype_names[entry.dtype]
        for one in entry.stored:
            assert one.object is sys.intern(one.object) and one.update is sys.intern(one.update)


def test_the_extension_is_built_here() -> None:
    # CI installs with a compiler; without the extension every checkout parses ~14 us an entry slower.
    assert metaparse.IMPLEMENTATION == "c"
    assert metadata._compiled_params is not None


@pytest.mark.parametrize("text", SAMPLES, ids=["unpacked", "packed", "golden"])
def test_canonical_text_gives_the_python_entries(text: bytes) -> None:
    # a name JSON escapes is left to the Python path: a text with one is not compiled at all
    assert (check(text) is None) == (b"\\" in split(text)[1])
    plain = _without_escaped_names(text)
    found, expected = check(plain), metadata.parse(plain).params
    assert found is not None and found == expected and list(found) == list(expected)


def _without_escaped_names(text: bytes) -> bytes:
    head, body = split(text)
    return head + b",\n".join(line for line in body.split(b",\n") if b"\\" not in line) + END


def test_entries_are_indistinguishable_from_constructed_ones() -> None:
    found = compiled(_without_escaped_names(SAMPLES[1]))
    assert found is not None
    for entry in found.values():
        built = ParamEntry(entry.dtype, tuple(entry.shape), str(entry.hash), tuple(map(_rebuilt, entry.stored)))
        assert entry == built and hash(entry) == hash(built) and repr(entry) == repr(built)
        assert pickle.loads(pickle.dumps(entry)) == built and pickle.loads(pickle.dumps(built)) == entry
        assert entry.to_json() == built.to_json() and entry.stored_size == built.stored_size
        with pytest.raises(AttributeError):
            entry.dtype = "F16"  # type: ignore[misc]  # still frozen


def _rebuilt(one: StoredLink) -> StoredLink:
    return StoredLink(one.update, one.object, one.size, one.offset, one.length)


def test_a_real_clean_of_many_small_tensors(repo: Path) -> None:
    """Metadata a real `git add` wrote (small tensors packed into one object, git-theta/2), and its v1 rewrite."""
    rng = np.random.default_rng(0)
    tensors = {f"block.{i}.{kind}": rng.standard_normal((4, 3)).astype(np.float32) for i in range(40) for kind in "ab"}
    tensors["emb\u00e9d"] = np.arange(6, dtype=np.int64)
    save_file(tensors, str(repo / "model.safetensors"))
    git(repo, "add", "model.safetensors")
    text = git(repo, "show", ":model.safetensors").stdout.encode()
    assert text.startswith(b'{"version":"git-theta/2"') and b'"offset":' in text
    found = check(_without_escaped_names(text))
    assert found is not None and len(found) == 80
    check(text)
    # the same lines in a version-1 file: pack members are refused there, by both
    assert check(text.replace(b"git-theta/2", b"git-theta/1", 1)) is None


def test_a_name_twice_and_anything_after_the_last_line() -> None:
    head, body = split(_without_escaped_names(SAMPLES[1]))
    lines = body.split(b",\n")
    assert check(head + b",\n".join(lines + lines[:1]) + END) is None
    assert check(head + b",\n".join(lines[1:] + lines[:1]) + END) is not None
    for tail in (b",", b"\n", b" ", b",\n", b"}"):
        assert check(head + body + tail + END) is None


@pytest.mark.parametrize(
    ("shape", "valid", "compiled_too"),
    [
        ((1,) * 64, True, True),
        ((1,) * 65, False, False),
        ((1 << 31, 1 << 31), True, True),
        ((1 << 31, 1 << 31, 2), False, False),  # 2**63 elements
        ((1 << 62,), True, True),
        ((1 << 62, 1), True, True),
        (((1 << 62) + 1,), False, False),
        ((3, 1 << 61), False, False),
        ((10**17, 10**17, 0), True, True),  # the product, not its partial products, is what the limit bounds
        (((1 << 63) - 1, 0), True, True),
        ((1 << 63, 0), True, False),  # past an int64: left to the Python path
        ((10**19, 0), True, False),
    ],
)
def test_shape_limits(shape: tuple[int, ...], valid: bool, compiled_too: bool) -> None:
    entry = ParamEntry("F32", shape, oid(1), (StoredLink("dense", oid(2), 9),))
    text = Metadata("safetensors", {}, {"w": entry}).serialize()
    assert (check(text) is not None) == compiled_too
    with python_only():
        assert outcome(text)[0] == ("ok" if valid else "error")


@pytest.mark.parametrize(
    ("size", "offset", "length", "accepted"),
    [
        (10, 0, 10, True),
        (10, 9, 1, True),
        (10, 0, 0, False),
        (10, 1, 10, False),
        (10, 10, 1, False),
        (0, 0, 1, False),
        (10**18 - 1, 10**18 - 2, 1, True),
        (2**63 - 1, 2**63 - 2, 1, True),
        (2**63 - 1, 0, 2**63 - 1, True),
        (2**63 - 1, 1, 2**63 - 1, False),
    ],
)
def test_pack_member_bounds(size: int, offset: int, length: int, accepted: bool) -> None:
    entry = ParamEntry("F32", (2,), oid(1), (StoredLink("dense", oid(2), size, offset, length),))
    assert (check(Metadata("safetensors", {}, {"w": entry}).serialize()) is not None) == accepted


def test_chain_length_limits() -> None:
    for count, accepted in ((metadata.MAX_LINKS, True), (metadata.MAX_LINKS + 1, False), (0, False)):
        chain = tuple(StoredLink("sparse", oid(i), i) for i in range(count))
        text = Metadata("safetensors", {}, {"w": ParamEntry("F32", (2,), oid(1), chain)}).serialize()
        assert (check(text) is not None) == accepted


numbers = st.sampled_from(
    [b"0", b"00", b"01", b"-0", b"-1", b"1.0", b"1e3", b"9" * 19, b"9" * 20, b"4611686018427387904", b"+1", b" 1"]
    + [b"4611686018427387905", b"9223372036854775807", b"9223372036854775808", b"18446744073709551616", b"1 "]
) | st.integers(0, 2**64).map(lambda n: str(n).encode())
noise = st.sampled_from(list(b'0123456789abcdefABCDEF"\\,:{}[]\n -.eE\x00\x1f\x7f\x80\xff')) | st.integers(0, 255)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A canonical sample with one to three changes to its parameter lines."""
    head, body = split(_without_escaped_names(draw(st.sampled_from(SAMPLES))))
    for _ in range(draw(st.integers(1, 3))):
        body = draw(st.sampled_from([_flip, _delete, _insert, _duplicate, _number, _uppercase, _dtype, _key]))(
            draw, body
        )
    return head + body + END


def _at(draw: st.DrawFn, body: bytes) -> int:
    return draw(st.integers(0, max(len(body) - 1, 0)))


def _flip(draw: st.DrawFn, body: bytes) -> bytes:
    i = _at(draw, body)
    return body[:i] + bytes([draw(noise)]) + body[i + 1 :]


def _delete(draw: st.DrawFn, body: bytes) -> bytes:
    i = _at(draw, body)
    return body[:i] + body[i + draw(st.integers(1, 70)) :]


def _insert(draw: st.DrawFn, body: bytes) -> bytes:
    i = _at(draw, body)
    return body[:i] + bytes(draw(st.lists(noise, min_size=1, max_size=4))) + body[i:]


def _duplicate(draw: st.DrawFn, body: bytes) -> bytes:
    lines = body.split(b",\n")
    lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(lines)))
    return b",\n".join(lines)


def _replace_one(draw: st.DrawFn, body: bytes, pattern: bytes, new: bytes | None = None) -> bytes:
    found = list(re.finditer(pattern, body))
    if not found:
        return body
    match = draw(st.sampled_from(found))
    replacement = draw(numbers) if new is None else new
    return body[: match.start()] + replacement + body[match.end() :]


def _number(draw: st.DrawFn, body: bytes) -> bytes:
    return _replace_one(draw, body, rb"(?<=[:\[,])\d+(?=[,\]}])")


def _uppercase(draw: st.DrawFn, body: bytes) -> bytes:
    found = list(re.finditer(rb"[a-f]", body))
    i = draw(st.sampled_from(found)).start()
    return body[:i] + body[i : i + 1].upper() + body[i + 1 :]


def _dtype(draw: st.DrawFn, body: bytes) -> bytes:
    new = draw(st.sampled_from([b"F33", b"f32", b"", b"F32 ", b"F3", b"F322", b"BOOL", b"I64", b"U8"]))
    return _replace_one(draw, body, rb'(?<="dtype":")[^"]*', new)


def _key(draw: st.DrawFn, body: bytes) -> bytes:
    """A key renamed, reordered or dropped: the Python path reads some of these (it ignores unknown keys)."""
    keys = [b"dtype", b"hash", b"shape", b"stored", b"object", b"size", b"update", b"offset", b"length", b"extra"]
    return _replace_one(draw, body, rb'(?<=")[a-z]+(?=":)', draw(st.sampled_from(keys)))


@MUTATIONS
@given(mutated())
def test_mutated_text_gives_the_python_result_or_none(text: bytes) -> None:
    check(text)


BIG = [2**31, 2**61, 2**62 - 1, 2**62, 2**62 + 1, 2**63 - 1, 2**63, 10**19]
dims = st.integers(0, 64) | st.sampled_from(BIG)
shapes = st.lists(dims, max_size=4).map(tuple) | st.integers(62, 66).map(lambda n: (1,) * n)
names = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=4) | st.text(max_size=3)


@st.composite
def member_links(draw: st.DrawFn) -> StoredLink:
    """A pack member at, just inside or just outside its object's bounds."""
    size = draw(st.integers(0, 40) | st.sampled_from(BIG))
    offset = draw(st.sampled_from([0, 1, size - 1, size, size + 1, -1]))
    length = draw(st.sampled_from([0, 1, size - offset - 1, size - offset, size - offset + 1, -1]))
    return StoredLink("dense", oid(1), size, offset, length)


odd_values: dict[str, st.SearchStrategy[Any]] = {
    "dtype": st.sampled_from(["BF16", "U8", "F33", "f32", "", "F32 "]),
    "shape": shapes,
    "hash": st.sampled_from(["B" * 64, "b" * 65, "b" * 63, oid(7)]),
    "stored": st.lists(member_links(), min_size=1, max_size=2).map(tuple),
    "chain": st.integers(0, 3) | st.sampled_from([metadata.MAX_LINKS, metadata.MAX_LINKS + 1]),
    "object": st.sampled_from(["A" * 64, "a" * 63, "g" * 64]),
    "update": names,
}


@st.composite
def near_limit_params(draw: st.DrawFn) -> dict[str, ParamEntry]:
    """Valid entries and one with a value at, inside or past a limit (the text is valid or refused on its account)."""
    valid = ParamEntry("F32", (2, 3), oid(3), (StoredLink("dense", oid(2), 99),))
    params = {name: valid for name in draw(st.lists(names, max_size=3))}
    field = draw(st.sampled_from(sorted(odd_values)))
    value = draw(odd_values[field])
    if field == "chain":
        odd = ParamEntry("F32", (2,), oid(3), tuple(StoredLink("sparse", oid(i), i) for i in range(value)))
    elif field in ("object", "update"):
        odd = ParamEntry(
            "F32", (2,), oid(3), (StoredLink(**{"update": "dense", "object": oid(2), "size": 9, field: value}),)
        )
    else:
        odd = ParamEntry(**{**{"dtype": "F32", "shape": (2,), "hash": oid(3), "stored": valid.stored}, field: value})
    params[draw(names)] = odd
    return params


@MUTATIONS
@given(near_limit_params(), st.booleans())
def test_entries_near_every_limit_give_the_python_result_or_none(params: dict[str, ParamEntry], v1: bool) -> None:
    text = Metadata("safetensors", {}, params).serialize()
    if v1:
        text = text.replace(b"git-theta/2", b"git-theta/1", 1)
    check(text)
    # a text the Python path accepts is compiled unless a name or update needs an escape or a number an int64
    with python_only():
        accepted = outcome(text)[0] == "ok"
    plain = b"\\" not in text and all(int(n) < 2**63 for n in re.findall(rb"(?<=[:\[,])\d+", split(text)[1]))
    assert (compiled(text) is not None) == (accepted and plain)


def test_the_bound_classes_must_be_the_slots_dataclasses_it_fills() -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class WithDict:
        dtype: str
        shape: tuple[int, ...]
        hash: str
        stored: tuple[StoredLink, ...]

    limits = (metadata.MAX_LINKS, metadata.MAX_NDIM, metadata.MAX_ELEMENTS)
    assert metaparse.bind(WithDict, StoredLink, dtypes.ITEMSIZE, metadata._quote, limits) is None
    assert metaparse.bind(ParamEntry, ParamEntry, dtypes.ITEMSIZE, metadata._quote, limits) is None
    assert metaparse.bind(StoredLink, StoredLink, dtypes.ITEMSIZE, metadata._quote, limits) is None
    # past the C side's fixed arrays: refused, not overrun
    from git_theta import _metaparse

    fields = (metaparse.ENTRY_FIELDS, metaparse.LINK_FIELDS)
    assert not _metaparse.bind(WithDict, fields[0], StoredLink, fields[1], 256, 64, 1 << 62)
    assert not _metaparse.bind(ParamEntry, fields[0], StoredLink, fields[1], 257, 64, 1 << 62)
    assert not _metaparse.bind(ParamEntry, fields[0], StoredLink, fields[1], 256, 65, 1 << 62)


def test_no_reference_is_lost_or_leaked() -> None:
    """Accepted or refused part way (after entries were built), kept or not: the shared objects' reference counts
    are as before (a count dropped too far frees them under everyone), and nothing stays allocated."""
    texts = [_without_escaped_names(text) for text in SAMPLES]
    head, body = split(texts[1])
    texts += [head + body[: len(body) * 2 // 3] + END, head + body + b",\n" + body.split(b",\n")[0] + END]
    shared = [
        None,
        (),
        *dtypes.ITEMSIZE,
        *(sys.intern(oid(i)) for i in range(3)),
        sys.intern("dense"),
        sys.intern("sparse"),
    ]
    # kept alive: interned strings that died and were made again would resize the interned dict, which is traced
    kept = [compiled(text) for text in texts]
    gc.collect()  # earlier tests' garbage, freed during the loop, would drop counts too
    gc.disable()
    try:
        before = [sys.getrefcount(value) for value in shared]
        tracemalloc.start()
        start = tracemalloc.get_traced_memory()[0]
        for _ in range(50):
            for text in texts:
                compiled(text), compiled(text, keep=False)
        grown = tracemalloc.get_traced_memory()[0] - start
        tracemalloc.stop()
    finally:
        gc.enable()
    assert [sys.getrefcount(value) for value in shared] == before
    assert grown < 64 << 10
    assert kept[0] is not None and kept[-1] is None


def test_without_the_extension_python_parses() -> None:
    code = (
        "import sys\n"
        "sys.modules['git_theta._metaparse'] = None  # as if it was never built\n"
        "from git_theta import metadata, metaparse\n"
        "text = sys.stdin.buffer.read()\n"
        "print(metaparse.IMPLEMENTATION, metadata._compiled_params, len(metadata.parse(text).params))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], input=SAMPLES[1], capture_output=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [b"python", b"None", b"30"]


def serialized(meta: Metadata) -> tuple[str, Any]:
    try:
        return "ok", meta.serialize()
    except Exception as error:  # what the Python code raises, the compiled path must raise too
        return type(error).__name__, str(error)


def check_serialize(meta: Metadata) -> bytes | None:
    """What the compiled writer wrote of `meta`, after checking serialize gives the Python code's bytes or error."""
    with python_only():
        reference = serialized(meta)
    assert serialized(meta) == reference
    assert metadata._compiled_serialize is not None
    try:
        written = metadata._compiled_serialize(b"head\n", sorted(meta.params), meta.params)
    except TypeError:
        return None  # names sorted() refuses: serialize raised before
    if written is not None:
        assert reference[0] == "ok" and reference[1].endswith(written[len(b"head\n") :])
    return written


@pytest.mark.parametrize("text", SAMPLES, ids=["unpacked", "packed", "golden"])
def test_serialize_writes_the_python_bytes(text: bytes) -> None:
    meta = metadata.parse(text)
    assert check_serialize(meta) is not None  # escaped names included: json's own encoder writes them
    assert meta.serialize() == text
    assert check_serialize(Metadata("safetensors", {}, {})) == b"head\n}}\n"


class Name(str):
    pass


@pytest.mark.parametrize(
    "odd",
    [
        {"shape": (True, 2)},  # written by json.dumps, as false/true: serialize's own fallback
        {"shape": [2, 3]},
        {"shape": (2**63, 1)},
        {"shape": (-1,)},
        {"hash": "caf\u00e9"},  # UnicodeEncodeError from serialize either way
        {"hash": 'with "quote'},
        {"dtype": Name("F32")},
        {"dtype": 3},
        {"stored": [StoredLink("dense", oid(1), 9)]},
        {"stored": (StoredLink("dense", oid(1), True),)},
        {"stored": (StoredLink("dense", oid(1), 9, 1, None),)},
        {"stored": (StoredLink("dense", oid(1), 2**64, 1, 2),)},
        {"stored": (StoredLink("d\u00e9nse\n", oid(1), -5),)},
        {"stored": ("not a link",)},
    ],
)
def test_serialize_of_odd_values_is_the_python_code_s(odd: dict[str, Any]) -> None:
    fields = {"dtype": "F32", "shape": (2,), "hash": oid(3), "stored": (StoredLink("dense", oid(2), 9),), **odd}
    check_serialize(Metadata("safetensors", {}, {"w": ParamEntry(**fields), "v": ParamEntry(**{**fields, **odd})}))
    check_serialize(Metadata("safetensors", {}, {Name("w"): ParamEntry(**fields)}))


texts = st.text(max_size=5) | st.sampled_from(["F32", "dense", oid(4), "\u00e9", '"', "\\"])
ints = st.integers(-3, 50) | st.sampled_from([2**62, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64])
any_links = st.builds(StoredLink, texts, texts, ints, st.none() | ints, st.none() | ints)
any_entries = st.builds(
    ParamEntry,
    texts,
    st.lists(ints | st.booleans(), max_size=3).map(tuple),
    texts,
    st.lists(any_links, max_size=3).map(tuple),
)


@MUTATIONS
@given(st.dictionaries(texts, any_entries, max_size=4))
def test_serialize_of_any_entries_is_the_python_code_s(params: dict[str, ParamEntry]) -> None:
    check_serialize(Metadata("safetensors", {}, params))
