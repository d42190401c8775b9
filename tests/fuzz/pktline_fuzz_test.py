"""Property-based fuzzing of git_theta/pktline.py (the framing git's filter protocol speaks); budget in fuzz_support."""

from __future__ import annotations

import io

from fuzz_support import FUZZ, bounded_parse, mutated
from hypothesis import given
from hypothesis import strategies as st

from git_theta import pktline
from git_theta.errors import ThetaError
from git_theta.pktline import MAX_PAYLOAD, PacketReader, PacketWriter


def _read_all_packets(data: bytes) -> list[bytes | None]:
    """Every packet up to the end of the stream; EOFError only at a packet boundary (checked by the caller)."""
    stream = io.BytesIO(data)
    packets: list[bytes | None] = []
    while True:
        try:
            packets.append(pktline.read_packet(stream))
        except EOFError:
            assert stream.tell() == len(data), "EOFError raised before the end of the stream"
            return packets


def _framed(payloads: list[bytes]) -> bytes:
    out = io.BytesIO()
    for payload in payloads:
        if payload:
            pktline.write_packet(out, payload)
        else:
            out.write(pktline.FLUSH)
    return out.getvalue()


payloads = st.lists(st.binary(min_size=0, max_size=300), max_size=12)
# Length fields a hostile peer could send: around every boundary of the format.
lengths = st.sampled_from([0, 1, 2, 3, 4, 5, MAX_PAYLOAD + 3, MAX_PAYLOAD + 4, MAX_PAYLOAD + 5, 0xFFFF]) | st.integers(
    0, 0xFFFF
)


def _check_packets(data: bytes) -> None:
    outcome = bounded_parse(lambda: _read_all_packets(data), len(data))
    if not isinstance(outcome, ThetaError):
        assert all(p is None or 0 < len(p) <= MAX_PAYLOAD for p in outcome)


@FUZZ
@given(st.binary(max_size=2000))
def test_any_bytes_read_as_packets_or_protocol_error(data: bytes) -> None:
    _check_packets(data)


@FUZZ
@given(st.data())
def test_mutated_packet_streams_read_or_protocol_error(data: st.DataObject) -> None:
    _check_packets(data.draw(mutated(_framed(data.draw(payloads)))))


@FUZZ
@given(st.lists(st.tuples(lengths, st.binary(max_size=64)), min_size=1, max_size=6))
def test_any_length_field_is_checked_before_reading(packets: list[tuple[int, bytes]]) -> None:
    """A declared length (hex, any value 0000-ffff) followed by too few, enough or too many bytes."""
    data = b"".join(b"%04x" % length + body for length, body in packets)
    _check_packets(data)


@FUZZ
@given(st.binary(min_size=4, max_size=4), st.binary(max_size=64))
def test_any_four_byte_header(header: bytes, rest: bytes) -> None:
    """Non-hex, signs, spaces, underscores, uppercase: only 4 hex digits are a length."""
    data = header + rest
    outcome = bounded_parse(lambda: _read_all_packets(data), len(data))
    if not all(c in b"0123456789abcdefABCDEF" for c in header):
        assert isinstance(outcome, ThetaError), f"header {header!r} was accepted as a length"


@FUZZ
@given(st.lists(st.binary(min_size=1, max_size=300), max_size=12))
def test_packets_round_trip(sent: list[bytes]) -> None:
    assert _read_all_packets(_framed(sent)) == sent


@FUZZ
@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\n"), max_size=80), max_size=10))
def test_text_lists_round_trip(lines: list[str]) -> None:
    out = io.BytesIO()
    pktline.write_text_list(out, lines)
    out.seek(0)
    assert pktline.read_text_list(out) == lines


@FUZZ
@given(st.lists(st.binary(max_size=3 * MAX_PAYLOAD), max_size=5))
def test_content_streams_round_trip_through_packet_writer_and_reader(writes: list[bytes]) -> None:
    out = io.BytesIO()
    writer = PacketWriter(out)
    for chunk in writes:
        writer.write(chunk)
    writer.close_stream()
    out.seek(0)
    reader = PacketReader(out)
    assert reader.read() == b"".join(writes)
    assert reader.finished and out.read() == b""


@FUZZ
@given(st.data())
def test_mutated_content_stream_reads_or_protocol_error(data: st.DataObject) -> None:
    """PacketReader (what a filter handler reads a file's content from) on damaged framing."""
    out = io.BytesIO()
    writer = PacketWriter(out)
    writer.write(data.draw(st.binary(max_size=2 * MAX_PAYLOAD)))
    writer.close_stream()
    stream = io.BytesIO(data.draw(mutated(out.getvalue())))

    def read_content() -> bytes:
        try:
            return PacketReader(stream).read()
        except EOFError:
            # the stream ended at a packet boundary before the flush: git went away; the filter exits quietly
            return b""

    bounded_parse(read_content, len(stream.getvalue()))
