"""pkt-line framing, over bytes only."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from git_theta import pktline
from git_theta.pktline import MAX_PAYLOAD, PacketReader, PacketWriter, ProtocolError


def packets(data: bytes) -> list[bytes | None]:
    stream = io.BytesIO(data)
    found: list[bytes | None] = []
    while True:
        try:
            found.append(pktline.read_packet(stream))
        except EOFError:
            return found


def test_write_packet_framing() -> None:
    out = io.BytesIO()
    pktline.write_packet(out, b"hi\n")
    pktline.write_packet(out, b"")
    assert out.getvalue() == b"0007hi\n0004"


def test_text_list_ends_with_flush() -> None:
    out = io.BytesIO()
    pktline.write_text_list(out, ["git-filter-server", "version=2"])
    assert out.getvalue() == b"0016git-filter-server\n000eversion=2\n0000"
    assert pktline.read_text_list(io.BytesIO(out.getvalue())) == ["git-filter-server", "version=2"]


def test_empty_list_is_a_lone_flush() -> None:
    out = io.BytesIO()
    pktline.write_text_list(out, [])
    assert out.getvalue() == b"0000"
    assert pktline.read_text_list(io.BytesIO(b"0000")) == []


def test_read_packets_and_flush() -> None:
    assert packets(b"0009hello0000000aworld\n0004") == [b"hello", None, b"world\n", b""]


def test_uppercase_hex_length_is_accepted() -> None:
    assert packets(b"000Ahello\n") == [b"hello\n"]


def test_max_payload() -> None:
    assert MAX_PAYLOAD == 65520 - 4
    biggest = b"x" * MAX_PAYLOAD
    out = io.BytesIO()
    pktline.write_packet(out, biggest)
    assert out.getvalue()[:4] == b"fff0"
    assert packets(out.getvalue()) == [biggest]
    with pytest.raises(ProtocolError, match="65517 bytes is too long"):
        pktline.write_packet(io.BytesIO(), biggest + b"x")
    with pytest.raises(ProtocolError, match="invalid pkt-line length 65521"):
        packets(b"fff1" + biggest + b"x")


@pytest.mark.parametrize("header", [b"0001", b"0002", b"0003"])
def test_lengths_below_four_are_invalid(header: bytes) -> None:
    with pytest.raises(ProtocolError, match="invalid pkt-line length"):
        packets(header + b"data")


@pytest.mark.parametrize("header", [b"00g9", b" 009", b"+009", b"0_09", b"-009", b"\xff009"])
def test_invalid_headers(header: bytes) -> None:
    with pytest.raises(ProtocolError, match="invalid pkt-line header"):
        packets(header + b"hello")


def test_truncated_header_and_payload() -> None:
    with pytest.raises(ProtocolError, match="truncated pkt-line header"):
        packets(b"00")
    with pytest.raises(ProtocolError, match="truncated pkt-line payload"):
        packets(b"000ahel")


def test_clean_end_of_stream() -> None:
    with pytest.raises(EOFError):
        pktline.read_packet(io.BytesIO(b""))


def test_packet_writer_splits_at_max_payload() -> None:
    out = io.BytesIO()
    writer = PacketWriter(out)
    data = bytes(range(256)) * 600  # 153600 bytes: three packets
    assert writer.write(data) == len(data)
    writer.close_stream()
    found = packets(out.getvalue())
    assert [len(p) if p is not None else None for p in found] == [
        MAX_PAYLOAD,
        MAX_PAYLOAD,
        len(data) - 2 * MAX_PAYLOAD,
        None,
    ]
    assert b"".join(p for p in found if p) == data


def test_packet_writer_frames_uneven_writes_across_batches() -> None:
    out = io.BytesIO()
    writer = PacketWriter(out)
    pieces = [
        bytes([n % 251]) * size
        for n, size in enumerate(
            [1, 70000, 3, PacketWriter.BATCH_BYTES, 65516, 12345, 2 * PacketWriter.BATCH_BYTES + 7]
        )
    ]
    for piece in pieces:
        assert writer.write(memoryview(piece)) == len(piece)
    writer.close_stream()
    data = b"".join(pieces)
    found = packets(out.getvalue())
    assert found[-1] is None
    sizes = [len(p) for p in found[:-1] if p is not None]
    assert all(size == MAX_PAYLOAD for size in sizes[:-1]) and 0 < sizes[-1] <= MAX_PAYLOAD
    assert b"".join(p for p in found if p) == data
    assert writer.written == len(data)


def test_packet_writer_to_a_file_descriptor_sends_the_same_bytes(tmp_path: Path) -> None:
    """Large writes to a real file go out with os.writev beside the buffered path: the bytes must be the same."""
    sizes = [1, 70000, 3, PacketWriter.BATCH_BYTES, 2 * MAX_PAYLOAD, 65516, 12345, 300 * MAX_PAYLOAD + 9, 5]
    pieces = [bytes([n % 251]) * size for n, size in enumerate(sizes)]
    expected = io.BytesIO()
    with open(tmp_path / "out", "wb") as file:
        pktline.write_text_list(file, ["status=success"])  # buffered by the file object, sent before the packets
        pktline.write_text_list(expected, ["status=success"])
        for out in (file, expected):
            writer = PacketWriter(out)
            for piece in pieces:
                assert writer.write(memoryview(piece)) == len(piece)
            writer.close_stream()
            assert writer.written == sum(sizes)
    assert (tmp_path / "out").read_bytes() == expected.getvalue()


def test_packet_reader_streams_up_to_flush() -> None:
    stream = io.BytesIO(b"0008abcd0004000adefgh\n0000" + b"0008next")
    reader = PacketReader(stream)
    assert reader.read(2) == b"ab"
    assert reader.read() == b"cddefgh\n"
    assert reader.finished
    assert pktline.read_packet(stream) == b"next"


def test_packet_reader_drain_skips_to_the_next_request() -> None:
    stream = io.BytesIO(b"0008abcd0008efgh0000" + b"0008next")
    reader = PacketReader(stream)
    assert reader.read(1) == b"a"
    reader.drain()
    assert reader.finished
    assert pktline.read_packet(stream) == b"next"


def test_packet_reader_on_truncated_content() -> None:
    reader = PacketReader(io.BytesIO(b"0008abcd"))
    with pytest.raises(EOFError):
        reader.read()
