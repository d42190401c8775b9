"""git-lfs pointers as the spec writes them, and what is not one."""

from __future__ import annotations

from git_theta import lfs_pointer

OID = "4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393"
POINTER = f"version https://git-lfs.github.com/spec/v1\noid sha256:{OID}\nsize 12345\n".encode()


def test_a_pointer_names_its_object_and_size() -> None:
    assert lfs_pointer.parse(POINTER) == lfs_pointer.Pointer(OID, 12345)
    extended = POINTER.replace(b"oid", b"ext-0-foo sha256:" + b"0" * 64 + b"\noid")
    assert lfs_pointer.parse(extended) == lfs_pointer.Pointer(OID, 12345)


def test_what_is_not_a_pointer() -> None:
    for data in (
        b"",
        POINTER[:-1],  # no final newline
        POINTER.replace(b"size 12345", b"size -1"),
        POINTER.replace(b"size 12345", b"size 012"),
        POINTER.replace(OID.encode(), OID[:-1].encode()),
        POINTER.replace(b"sha256:", b"sha1:"),
        POINTER + b"x" * lfs_pointer.MAX_BYTES,  # longer than the spec allows: content
        b'{"theta": 1}\n',
    ):
        assert lfs_pointer.parse(data) is None, data
