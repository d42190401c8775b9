"""The text view git line-diffs: one line per group, fixed widths, file-level data on a line of its own."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from git_theta import dtypes, metadata
from git_theta.display import view
from git_theta.display.lines import bounds
from git_theta.errors import MetadataError
from git_theta.metadata import Metadata, ParamEntry, StoredLink


def test_render_is_stable_on_1000_groups() -> None:
    link = (StoredLink("dense", "ab" * 32, 1234),)
    params = {f"layer.{i}.weight": ParamEntry("F32", (64, 64), f"{i:064x}", link) for i in range(1000)}
    text = view.render(Metadata("safetensors", {}, params))
    lines = text.splitlines()
    assert len(lines) == 1001
    assert lines[1] == "layer.0.weight" + " " * 35 + "F32   [64,64]       dense           1.2 KiB  000000000000"
    # Adding a group with a long name leaves every other group's line unchanged (fixed widths).
    params["x" * 80] = ParamEntry("BF16", (1,), "f" * 64, link)
    longer = view.render(Metadata("safetensors", {}, params)).splitlines()
    assert set(lines[1:]) <= set(longer)


def _metadata(params: dict[str, ParamEntry], file: dict[str, object] | None = None) -> Metadata:
    return Metadata("safetensors", file or {"header": {"object": "cd" * 32, "size": 10}}, params)


def _variety() -> dict[str, ParamEntry]:
    dense = StoredLink("dense", "ab" * 32, 1234)
    return {
        "a.weight": ParamEntry("F32", (2, 3), "1" * 64, (dense,)),
        "chain": ParamEntry("BF16", (4096, 11), "2" * 64, (dense, StoredLink("sparse", "ef" * 32, 99))),
        "scalar": ParamEntry("I64", (), "3" * 64, (dense,)),
        'quote"and\\back': ParamEntry("F16", (0,), "4" * 64, (dense,)),  # escaped: parsed by metadata.parse
        "nämé": ParamEntry("U8", (5,), "5" * 64, (dense,)),  # \u escapes in canonical JSON
        "z.tab\tname": ParamEntry("BOOL", (1, 1), "6" * 64, (dense,)),
    }


def test_renderer_gives_the_view_render_gives() -> None:
    data = _metadata(_variety()).serialize()
    assert view.Renderer().view(data, "m") == view.render(metadata.parse(data))
    assert view.Renderer().view(_metadata({}).serialize(), "m") == view.render(_metadata({}))


def test_renderer_parses_only_lines_it_has_not_seen() -> None:
    params = _variety()
    renderer = view.Renderer()
    renderer.view(_metadata(params).serialize(), "v1")
    seen = dict(renderer._rows)
    params["a.weight"] = ParamEntry("F32", (2, 3), "9" * 64, (StoredLink("xor", "ab" * 32, 7),))
    second = _metadata(params).serialize()
    assert renderer.view(second, "v2") == view.render(metadata.parse(second))
    assert len(renderer._rows) == len(seen) + 1 and seen.items() <= renderer._rows.items()


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'"dtype":"F32"', b'"dtype":"F33"'),  # matched by the fast pattern, then refused: parsed for the error
        (b'"shape":[2,3]', b'"shape":[-2,3]'),
        (b'"size":1234', b'"size":true'),
    ],
)
def test_renderer_refuses_what_metadata_parse_refuses(old: bytes, new: bytes) -> None:
    data = _metadata(_variety()).serialize().replace(old, new, 1)
    with pytest.raises(MetadataError) as expected:
        metadata.parse(data, "bad")
    with pytest.raises(MetadataError) as got:
        view.Renderer().view(data, "bad")
    assert str(got.value) == str(expected.value)


def test_renderer_of_a_name_twice_or_unsorted_lines() -> None:
    data = _metadata(_variety()).serialize()
    lines = data.split(b"\n")
    twice = b"\n".join([*lines[:5], lines[4], *lines[5:]])
    with pytest.raises(MetadataError, match="appears twice"):
        view.Renderer().view(twice, "m")
    swapped = b"\n".join([*lines[:4], lines[5], lines[4], *lines[6:]])  # out of order: the whole parse sorts
    assert view.Renderer().view(swapped, "m") == view.render(metadata.parse(data))


def test_smudged_view_passes_other_blobs_through() -> None:
    pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 3\n"
    assert view.smudged_view(pointer, "p") == pointer
    broken = metadata.PREFIX + b"1"
    assert view.smudged_view(broken, "b") == broken  # textconv reports it, naming the file
    data = _metadata(_variety()).serialize()
    shown = view.smudged_view(data, "m")
    assert shown.startswith(view.VIEW_PREFIX) and shown.decode() == view.render(metadata.parse(data))


def test_text_view_of_a_rendered_view_is_that_view(tmp_path: Path) -> None:
    """A textconv configured before the filter rendered views (no `cat` in front) still shows them as they are."""
    shown = view.render(_metadata(_variety()))
    (tmp_path / "view.txt").write_text(shown)
    assert view.text_view(file=str(tmp_path / "view.txt")) == shown


def _members() -> dict[str, ParamEntry]:
    def member(offset: int, length: int, update: str = "dense") -> StoredLink:
        return StoredLink(update, "cd" * 32, 5000, offset, length)

    return {
        "a.weight": ParamEntry("F32", (32, 32), "1" * 64, (member(0, 3993),)),
        "b.scalar": ParamEntry("BF16", (), "2" * 64, (member(3993, 7),)),
        "c.bias": ParamEntry("F8_E4M3", (3, 1, 7), "3" * 64, (member(4000, 1000, "sparse"),)),
        "d.chain": ParamEntry("F16", (8,), "4" * 64, (member(0, 10), member(10, 20, "xor"))),
    }


def test_rows_of_single_pack_members_are_those_render_gives() -> None:
    data = _metadata(_members()).serialize()
    lines = [line.rstrip(b",") for line in data.split(b"\n")]
    assert sum(view._ONE_MEMBER_LINE.fullmatch(line) is not None for line in lines) == 3  # all but the chain
    assert view.Renderer().view(data, "m") == view.render(metadata.parse(data))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'"length":3993,', b'"length":0,'),  # an empty member
        (b'"length":1000,', b'"length":1001,'),  # past the end of its pack
        (b'"dtype":"BF16"', b'"dtype":"BF17"'),
        (b'"shape":[32,32]', b'"shape":[32,032]'),  # not as JSON writes a number: not the fast pattern's
    ],
)
def test_a_single_member_line_is_refused_as_metadata_parse_refuses_it(old: bytes, new: bytes) -> None:
    data = _metadata(_members()).serialize().replace(old, new, 1)
    with pytest.raises(MetadataError) as expected:
        metadata.parse(data, "bad")
    with pytest.raises(MetadataError) as got:
        view.Renderer().view(data, "bad")
    assert str(got.value) == str(expected.value)


def test_the_row_extension_is_built_here() -> None:
    # CI installs with a compiler; without it a 10^5-group `git diff` renders every row in Python (~3x slower).
    assert view.IMPLEMENTATION == "c"


def _member_line(name: str, dtype: str, shape: str, length: int, offset: int, size: int, update: str) -> bytes:
    return (
        f'"{name}":{{"dtype":"{dtype}","hash":"{"ab12" * 16}","shape":[{shape}],"stored":[{{"length":{length},'
        f'"object":"{"c" * 64}","offset":{offset},"size":{size},"update":"{update}"}}]}}'
    ).encode("ascii")


def _python_row(line: bytes) -> tuple[str, str, int, int] | None:
    return view._fast_row(line)


_DIM = st.one_of(st.integers(0, 40), st.sampled_from([10**17, 10**18 - 1, 10**18, 2**31, 2**62, 2**63]))
_COUNT = st.one_of(st.integers(0, 5000), st.integers(0, 10**19))


@settings(max_examples=400, deadline=None)
@given(
    name=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60),
    dtype=st.sampled_from(["F32", "BF16", "F8_E4M3", "I64", "U8", "BOOL", "F33", "f32", "", "A" * 17]),
    dims=st.lists(_DIM, max_size=66),
    shape_text=st.sampled_from(["", "032", "1,", ",1", "1,,2", "-1"]),
    length=_COUNT,
    offset=_COUNT,
    size=_COUNT,
    update=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20),
)
def test_c_rows_are_the_python_rows(
    name: str, dtype: str, dims: list[int], shape_text: str, length: int, offset: int, size: int, update: str
) -> None:
    # The C renderer accepts exactly the lines the Python one-member path accepts and renders them alike; the
    # rest (None) goes to the Python renderer, which names the error.
    assert view._member_rows is not None
    for shape in (",".join(map(str, dims)), shape_text):
        line = _member_line(name, dtype, shape, length, offset, size, update)
        (got,) = view._member_rows([line], dtypes.BITS, metadata.MAX_ELEMENTS, metadata.MAX_LINKS, view._WIDTHS)
        assert got == _python_row(line)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3), st.integers(0, 300), st.integers(0, 3))
def test_c_rows_of_damaged_lines_are_the_python_rows(garbage: bytes, where: int, how: int) -> None:
    line = bytearray(_member_line("layer.0.weight", "F32", "32,32", 3993, 0, 8000, "dense"))
    where %= len(line) + 1
    if how == 0:
        line[where:where] = garbage
    elif how == 1:
        del line[where : where + 1 + len(garbage)]
    elif how == 2 and where < len(line):
        line[where] ^= garbage[0] if garbage else 0x01
    else:
        line = line[:where]
    assert view._member_rows is not None
    (got,) = view._member_rows([bytes(line)], dtypes.BITS, metadata.MAX_ELEMENTS, metadata.MAX_LINKS, view._WIDTHS)
    assert got == _python_row(bytes(line))


@pytest.mark.parametrize("unit", [1, 1 << 10, 1 << 20, 1 << 30, 1 << 40])
def test_c_size_column_is_human_size(unit: int) -> None:
    # Rounding of the one decimal (half to even on the exact value) at and around every tie, in every unit.
    assert view._member_rows is not None
    sizes = {0, 1, 1023, 1024, 1025, (1 << 50) * 5, 2**53 // 10 - 1, 2**53 // 10, 10**18 - 1}
    for tenth in range(0, 10240, 37):
        for delta in (-1, 0, 1):
            sizes.add(max(0, tenth * unit * 1024 // 10240 * 10 + delta))
            sizes.add(max(0, unit * tenth // 20 + delta))
    lines = [_member_line("t", "U8", "", size, 0, size, "dense") for size in sorted(sizes) if size]
    rows = view._member_rows(lines, dtypes.BITS, metadata.MAX_ELEMENTS, metadata.MAX_LINKS, view._WIDTHS)
    assert rows == [_python_row(line) for line in lines]
    assert all(row is not None for row in rows)


_LINK = st.one_of(
    st.tuples(st.just("member"), _COUNT, _COUNT, _COUNT, st.sampled_from(["dense", "xor", "sparse", "", "low-rank"])),
    st.tuples(st.just("whole"), st.just(0), st.just(0), _COUNT, st.sampled_from(["dense", "xor", "ia3"])),
)


def _link_json(kind: str, length: int, offset: int, size: int, update: str) -> str:
    if kind == "member":
        return f'{{"length":{length},"object":"{"d" * 64}","offset":{offset},"size":{size},"update":"{update}"}}'
    return f'{{"object":"{"e" * 64}","size":{size},"update":"{update}"}}'


@settings(max_examples=300, deadline=None)
@given(links=st.lists(_LINK, min_size=1, max_size=6), many=st.sampled_from([0, 0, 0, 255, 256, 257]))
def test_c_rows_of_chains_are_the_python_rows(links: list[tuple[str, int, int, int, str]], many: int) -> None:
    # Chains of members and whole objects (any order, any count up to and past MAX_LINKS): the same row or None.
    if many:
        links = [("member", 10, 0, 100, "xor")] * many
    stored = ",".join(_link_json(*link) for link in links)
    line = f'"w":{{"dtype":"F16","hash":"{"0f" * 32}","shape":[3,5],"stored":[{stored}]}}'.encode("ascii")
    assert view._member_rows is not None
    (got,) = view._member_rows([line], dtypes.BITS, metadata.MAX_ELEMENTS, metadata.MAX_LINKS, view._WIDTHS)
    assert got == _python_row(line)
    fits = all(max(n, o, s) < 10**18 for _, n, o, s, _ in links)  # numbers of at most 18 digits (view._COUNT)
    if many == 0 and fits and all(kind == "whole" or (0 < n and o + n <= s) for kind, n, o, s, _ in links):
        assert got is not None


def test_c_rows_of_real_metadata_are_the_views_rows() -> None:
    data = _metadata(_members()).serialize()
    assert view.Renderer().view(data, "m") == view.render(metadata.parse(data))
    body = [line.rstrip(b",") for line in data.split(b"\n")[4:-2]]
    assert view._member_rows is not None
    rows = view._member_rows(body, dtypes.BITS, metadata.MAX_ELEMENTS, metadata.MAX_LINKS, view._WIDTHS)
    assert all(row is not None for row in rows) and len(rows) == 4  # the chain too


def _block(lines: list[bytes]) -> tuple[bytes, int, int]:
    data = b"head\n" + b",\n".join(lines) + b"\n}}\n"
    return data, 5, len(data) - 4


def _expected_block(lines: list[bytes]) -> tuple[str, int, int, int] | None:
    """block_view's contract, from member_rows: every row rendered, names strictly increasing, sums below 2^63."""
    assert view._member_rows is not None
    rows = view._member_rows(lines, dtypes.BITS, metadata.MAX_ELEMENTS, metadata.MAX_LINKS, view._WIDTHS)
    if any(row is None for row in rows):
        return None
    found = [row for row in rows if row is not None]
    if any(a[0] >= b[0] for a, b in zip(found, found[1:])):
        return None
    elements, stored = sum(row[2] for row in found), sum(row[3] for row in found)
    if elements >= 2**63 or stored >= 2**63:
        return None
    return "\n".join(row[1] for row in found), len(found), elements, stored


@settings(max_examples=300, deadline=None)
@given(
    names=st.lists(st.sampled_from(["a", "b", "b.0", "b.1", "c", "é", "x\\y", ""]), max_size=6),
    sizes=st.lists(st.one_of(st.integers(1, 5000), st.integers(10**17, 10**18 - 1)), min_size=1, max_size=3),
    shape=st.sampled_from(["32,32", "", "0", "999999999999,999999999999", "4,-1"]),
    dtype=st.sampled_from(["F32", "BF16", "F33"]),
)
def test_block_view_is_member_rows_joined(names: list[str], sizes: list[int], shape: str, dtype: str) -> None:
    # Lines in and out of order, names repeated, escaped or not ASCII, refused dtypes and shapes, sums near 2^63.
    assert view._block_view is not None
    lines = []
    for index, name in enumerate(names):
        size = sizes[index % len(sizes)]
        line = _member_line("NAME", dtype, shape, size, 0, size, "dense")
        lines.append(line.replace(b"NAME", name.encode("utf-8"), 1))
    got = view._block_view(*_block(lines), dtypes.BITS, metadata.MAX_ELEMENTS, metadata.MAX_LINKS, view._WIDTHS)
    assert got == (_expected_block(lines) if lines != [] else ("", 0, 0, 0))


@pytest.mark.parametrize(
    "text",
    [
        b"head\n" + b"x" * 3 + b"\n}}\n",
        b"head\n" + _member_line("a", "F32", "1", 4, 0, 4, "d") + b",",  # a trailing comma
        b"head\n" + _member_line("a", "F32", "1", 4, 0, 4, "d") + b",\n",  # and an empty last line
        b"head\n" + _member_line("a", "F32", "1", 4, 0, 4, "d") + b"\n" + _member_line("b", "F32", "1", 4, 0, 4, "d"),
    ],
)
def test_block_view_of_an_empty_or_unfinished_line_is_none(text: bytes) -> None:
    assert view._block_view is not None
    stop = len(text) - 4 if text.endswith(b"\n}}\n") else len(text)
    assert view._block_view(text, 5, stop, dtypes.BITS, metadata.MAX_ELEMENTS, 256, view._WIDTHS) is None
    with pytest.raises(ValueError):
        view._block_view(text, 5, len(text) + 1, dtypes.BITS, metadata.MAX_ELEMENTS, 256, view._WIDTHS)


def test_a_canonical_version_is_rendered_in_one_pass() -> None:
    data = _metadata(_members()).serialize()
    found = bounds(data)
    assert found is not None
    _, start, stop = found
    assert view._block_view is not None
    rows = view._block_view(data, start, stop, dtypes.BITS, metadata.MAX_ELEMENTS, metadata.MAX_LINKS, view._WIDTHS)
    assert rows is not None and rows[1] == 4
    assert view.Renderer(remember=False).view(data, "m") == view.render(metadata.parse(data))


def test_a_chain_whose_sizes_pass_2_63_bytes_is_rendered_as_python_sums_it() -> None:
    # Ten links of 10^18 - 1 bytes: a 64-bit sum in C would wrap; the row is left to the Python renderer.
    links = tuple(StoredLink("xor", "ab" * 32, 10**18 - 1) for _ in range(10))
    data = _metadata({"w": ParamEntry("F32", (2,), "1" * 64, links)}).serialize()
    assert view.Renderer().view(data, "m") == view.render(metadata.parse(data))
    assert "9094947.0 TiB" in view.Renderer(remember=False).view(data, "m")
