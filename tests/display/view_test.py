"""The text view git line-diffs: one line per group, fixed widths, file-level data on a line of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from git_theta import metadata
from git_theta.display import view
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
