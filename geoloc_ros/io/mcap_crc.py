"""MCAP integrity: CRCs written after :class:`~geoloc_ros.io.bag.BagWriter` closes, checked on read.

``rosbags`` neither writes nor checks the CRCs MCAP provides (it leaves them 0, "not computed"), so
random bytes written over a bag went unnoticed. :func:`add_crcs` fills in every uncompressed
chunk's ``uncompressed_crc`` and the ``DataEnd`` record's ``data_section_crc``;
:func:`verify_mcap` walks the file record by record (framing, magic, chunk contents) and checks
every CRC that is not 0, so a bag recorded by ``ros2 bag record`` (whose MCAP writer computes
them) or by :class:`BagWriter` is checked end to end. Record layout: the MCAP specification
(opcode ``u8``, length ``u64``, content; little endian).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from geoloc_ros.io.errors import BagError

MAGIC = b"\x89MCAP0\r\n"
OP_FOOTER = 0x02
OP_CHUNK = 0x06
OP_DATA_END = 0x0F
_RECORD_HEAD = struct.Struct("<BQ")
_CHUNK_HEAD = struct.Struct("<QQQI")  # start time, end time, uncompressed size, uncompressed CRC
_CHUNK_CRC_OFFSET = 24


def _chunk_fields(body: bytes, where: str) -> tuple[int, int, str, bytes]:
    """``(uncompressed size, CRC, compression, records)`` of a Chunk record's content."""
    try:
        _, _, size, crc = _CHUNK_HEAD.unpack_from(body, 0)
        (name_len,) = struct.unpack_from("<I", body, 28)
        compression = body[32 : 32 + name_len].decode("utf-8")
        (records_len,) = struct.unpack_from("<Q", body, 32 + name_len)
    except (struct.error, UnicodeDecodeError):
        raise BagError(f"{where}: malformed chunk header") from None
    start = 40 + name_len
    if start + records_len > len(body):
        raise BagError(f"{where}: chunk records run past the chunk ({records_len} bytes)")
    return size, crc, compression, body[start : start + records_len]


def _decompress(compression: str, records: bytes, size: int, where: str) -> bytes | None:
    """The chunk's uncompressed records, or None when its compression cannot be checked here."""
    if compression == "":
        return records
    if compression == "lz4":
        try:
            import lz4.frame
        except ImportError:  # pragma: no cover - lz4 ships with the dependencies
            return None
        try:
            return bytes(lz4.frame.decompress(records))
        except RuntimeError as exc:
            raise BagError(f"{where}: cannot decompress lz4 chunk: {exc}") from None
    return None  # zstd: not installed; the data-section CRC still covers the chunk


def _check_record_framing(records: bytes, where: str) -> None:
    pos = 0
    while pos < len(records):
        if pos + _RECORD_HEAD.size > len(records):
            raise BagError(f"{where}: truncated record inside a chunk")
        _, length = _RECORD_HEAD.unpack_from(records, pos)
        pos += _RECORD_HEAD.size + length
        if pos > len(records):
            raise BagError(f"{where}: a record inside a chunk runs past its end")


def _walk(path: Path, patch: bool) -> None:
    """Stream the records (one chunk in memory at a time), checking or filling in the CRCs."""
    name = str(path)
    file_size = path.stat().st_size
    with path.open("r+b" if patch else "rb") as fh:
        if file_size < 2 * len(MAGIC) or fh.read(len(MAGIC)) != MAGIC:
            raise BagError(f"{name}: not an MCAP file (no magic bytes at its start)")
        fh.seek(file_size - len(MAGIC))
        if fh.read(len(MAGIC)) != MAGIC:
            raise BagError(f"{name}: truncated MCAP file (no magic bytes at its end)")
        fh.seek(len(MAGIC))
        # The data section CRC, with and without the leading magic (writers differ on it).
        data_crc, data_crc_after_magic = zlib.crc32(MAGIC), 0
        pos, end = len(MAGIC), file_size - len(MAGIC)
        while pos < end:
            where = f"{name}: record at byte {pos}"
            head = fh.read(_RECORD_HEAD.size)
            if len(head) < _RECORD_HEAD.size or pos + _RECORD_HEAD.size > end:
                raise BagError(f"{where}: truncated record header (the file is corrupted)")
            opcode, length = _RECORD_HEAD.unpack(head)
            body_start = pos + _RECORD_HEAD.size
            if body_start + length > end:
                raise BagError(
                    f"{where}: length {length} runs past the end of the file (the file is corrupted)"
                )
            if opcode == OP_DATA_END:
                end_body = fh.read(length)
                stored = struct.unpack_from("<I", end_body, 0)[0] if length >= 4 else 0
                if patch and length >= 4:
                    fh.seek(body_start)
                    fh.write(struct.pack("<I", data_crc))
                elif stored and stored not in (data_crc, data_crc_after_magic):
                    raise BagError(f"{name}: data section CRC mismatch (the file is corrupted)")
                break
            body = bytearray(fh.read(length))
            if opcode == OP_CHUNK:
                size, crc, compression, records = _chunk_fields(bytes(body), where)
                plain = _decompress(compression, records, size, where)
                if plain is not None:
                    if len(plain) != size:
                        raise BagError(f"{where}: chunk holds {len(plain)} bytes, its header says {size}")
                    _check_record_framing(plain, where)
                    actual = zlib.crc32(plain)
                    if patch and compression == "":
                        struct.pack_into("<I", body, _CHUNK_CRC_OFFSET, actual)
                        fh.seek(body_start + _CHUNK_CRC_OFFSET)
                        fh.write(struct.pack("<I", actual))
                        fh.seek(body_start + length)
                    elif crc and actual != crc:
                        raise BagError(f"{where}: chunk CRC mismatch (the file is corrupted)")
            elif opcode == OP_FOOTER:
                break
            data_crc = zlib.crc32(body, zlib.crc32(head, data_crc))
            data_crc_after_magic = zlib.crc32(body, zlib.crc32(head, data_crc_after_magic))
            pos = body_start + length


def verify_mcap(path: str | Path) -> None:
    """Check an MCAP file's framing and every non-zero CRC; :class:`BagError` names what is wrong."""
    _walk(Path(path), patch=False)


def add_crcs(path: str | Path) -> None:
    """Fill in the chunk and data-section CRCs of an MCAP file written without them (in place)."""
    _walk(Path(path), patch=True)
