"""Image size and orientation read off file headers, without decoding any pixel.

:func:`image_size` lets :func:`.imageio.imdecode` refuse an image whose header
declares more pixels than the limit *before* OpenCV allocates them: a crafted
PNG of 70 bytes can declare 100000×100000 pixels (30 GB once decoded).
:func:`exif_orientation` reads the orientation tag (TIFF 6.0 / EXIF tag 274)
of JPEG (APP1 ``Exif`` segment) and TIFF files.

Sizes are parsed for PNG (IHDR), JPEG (first SOFn), BMP/DIB, WebP (VP8, VP8L,
VP8X), TIFF and BigTIFF (first IFD, the page OpenCV decodes), PNM/PFM,
Radiance HDR and Sun raster.  Other formats (OpenEXR, JPEG 2000) give
``None``: OpenCV's own limit applies while decoding, and the caller checks
the decoded size.  Any malformed header also gives ``None`` (the decoder then
reports what is wrong).

:func:`truncation_problem` tells a PNG / JPEG cut short (no end marker) from
one followed by other data (a phone's "motion photo"), and :func:`frame_count`
counts the frames of APNG, animated WebP and multi-page TIFF files (OpenCV
decodes the first), both by walking the chunk / segment / IFD structure.
"""
from __future__ import annotations

import re
import struct

import numpy as np

Buffer = bytes | bytearray | memoryview | np.ndarray

#: The EXIF/TIFF orientation tag.
ORIENTATION_TAG = 274
_TIFF_WIDTH, _TIFF_HEIGHT = 256, 257
# JPEG start-of-frame markers (C4 = DHT, C8 = JPG extension, CC = DAC are not frames).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _view(data: Buffer) -> memoryview:
    return memoryview(data).cast("B")


def image_format(data: Buffer) -> str | None:
    """``png``, ``jpeg``, ``tiff``, ``bmp``, ``webp``, ``pnm``, ``pfm``, ``hdr``, ``sunras`` or None."""
    head = bytes(_view(data)[:16])
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head.startswith(b"BM"):
        return "bmp"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if re.match(rb"P[1-6]\s", head):
        return "pnm"
    if re.match(rb"P[Ff]\s", head):
        return "pfm"
    if head.startswith(b"#?"):
        return "hdr"
    if head.startswith(b"\x59\xa6\x6a\x95"):
        return "sunras"
    return None


def image_size(data: Buffer) -> tuple[int, int] | None:
    """``(width, height)`` declared by the header, or None (unknown format or malformed header)."""
    mv = _view(data)
    fmt = image_format(mv)
    parser = _SIZE_PARSERS.get(fmt or "")
    if parser is None:
        return None
    try:
        size = parser(mv)
    except (struct.error, IndexError, ValueError):
        return None
    if size is None or size[0] < 0 or size[1] < 0:
        return None
    return size


def exif_orientation(data: Buffer) -> int:
    """The orientation tag (1..8) of a JPEG or TIFF file; 1 (as stored) when absent or invalid."""
    mv = _view(data)
    fmt = image_format(mv)
    try:
        if fmt == "tiff":
            value = _tiff_tags(mv, 0, (ORIENTATION_TAG,)).get(ORIENTATION_TAG, 1)
        elif fmt == "jpeg":
            value = _jpeg_orientation(mv)
        else:
            value = 1
    except (struct.error, IndexError, ValueError):
        value = 1
    return value if 1 <= value <= 8 else 1


# --------------------------------------------------------------------------- formats
def _png(mv: memoryview) -> tuple[int, int] | None:
    if bytes(mv[12:16]) != b"IHDR":
        return None
    return struct.unpack_from(">II", mv, 16)


def _jpeg_segments(mv: memoryview):
    """``(marker, payload_offset, payload_length)`` of each segment before the first scan."""
    i, n = 2, len(mv)
    while i + 4 <= n:
        if mv[i] != 0xFF:
            return
        marker = mv[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # stand-alone markers
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan
            return
        (length,) = struct.unpack_from(">H", mv, i + 2)
        if length < 2:
            return
        yield marker, i + 4, length - 2
        i += 2 + length


def _jpeg(mv: memoryview) -> tuple[int, int] | None:
    for marker, start, length in _jpeg_segments(mv):
        if marker in _JPEG_SOF and length >= 5:
            height, width = struct.unpack_from(">HH", mv, start + 1)
            return (width, height) if height else None  # height 0: defined later by a DNL marker
    return None


def _jpeg_orientation(mv: memoryview) -> int:
    for marker, start, length in _jpeg_segments(mv):
        if marker == 0xE1 and bytes(mv[start:start + 6]) == b"Exif\x00\x00":
            tiff = mv[start + 6:start + length]
            return _tiff_tags(tiff, 0, (ORIENTATION_TAG,)).get(ORIENTATION_TAG, 1)
    return 1


def _bmp(mv: memoryview) -> tuple[int, int]:
    (dib,) = struct.unpack_from("<I", mv, 14)
    if dib == 12:  # BITMAPCOREHEADER
        return struct.unpack_from("<HH", mv, 18)
    width, height = struct.unpack_from("<ii", mv, 18)
    return abs(width), abs(height)  # negative height: rows stored top-down


def _webp(mv: memoryview) -> tuple[int, int] | None:
    chunk = bytes(mv[12:16])
    if chunk == b"VP8 " and bytes(mv[23:26]) == b"\x9d\x01\x2a":
        w, h = struct.unpack_from("<HH", mv, 26)
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and mv[20] == 0x2F:
        (bits,) = struct.unpack_from("<I", mv, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        b = bytes(mv[24:30])
        return int.from_bytes(b[:3], "little") + 1, int.from_bytes(b[3:], "little") + 1
    return None


def _tiff_tags(mv: memoryview, base: int, wanted: tuple[int, ...]) -> dict[int, int]:
    """Integer values of ``wanted`` tags in the first IFD of the TIFF structure at ``mv[base:]``."""
    order = bytes(mv[base:base + 2])
    e = {b"II": "<", b"MM": ">"}.get(order)
    if e is None:
        raise ValueError("not a TIFF byte order")
    (version,) = struct.unpack_from(e + "H", mv, base + 2)
    if version == 42:
        (ifd,) = struct.unpack_from(e + "I", mv, base + 4)
        (count,) = struct.unpack_from(e + "H", mv, base + ifd)
        first, size, head, value_at = base + ifd + 2, 12, e + "HHI", 8
    elif version == 43:  # BigTIFF
        (ifd,) = struct.unpack_from(e + "Q", mv, base + 8)
        (count,) = struct.unpack_from(e + "Q", mv, base + ifd)
        first, size, head, value_at = base + ifd + 8, 20, e + "HHQ", 12
    else:
        raise ValueError("not a TIFF version")
    formats = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8
    found: dict[int, int] = {}
    for k in range(min(count, 4096)):
        at = first + k * size
        tag, typ, n = struct.unpack_from(head, mv, at)
        if tag in wanted and n >= 1 and typ in formats:
            (found[tag],) = struct.unpack_from(e + formats[typ], mv, at + value_at)
    return found


def _tiff(mv: memoryview) -> tuple[int, int] | None:
    tags = _tiff_tags(mv, 0, (_TIFF_WIDTH, _TIFF_HEIGHT))
    if _TIFF_WIDTH not in tags or _TIFF_HEIGHT not in tags:
        return None
    return tags[_TIFF_WIDTH], tags[_TIFF_HEIGHT]


def _pnm(mv: memoryview) -> tuple[int, int] | None:
    head = re.sub(rb"#[^\n\r]*", b" ", bytes(mv[:4096]))  # comments
    m = re.match(rb"P[1-6Ff]\s+(\d+)\s+(\d+)", head)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _hdr(mv: memoryview) -> tuple[int, int] | None:
    head = bytes(mv[:65536])
    end = head.find(b"\n\n")
    if end < 0:
        return None
    m = re.match(rb"([-+])([XY]) (\d+) ([-+])([XY]) (\d+)", head[end + 2:end + 64])
    if not m or m.group(2) == m.group(5):
        return None
    sizes = {m.group(2): int(m.group(3)), m.group(5): int(m.group(6))}
    return sizes[b"X"], sizes[b"Y"]


def _sunras(mv: memoryview) -> tuple[int, int]:
    return struct.unpack_from(">II", mv, 4)


_SIZE_PARSERS = {
    "png": _png, "jpeg": _jpeg, "bmp": _bmp, "webp": _webp, "tiff": _tiff, "pnm": _pnm, "pfm": _pnm,
    "hdr": _hdr, "sunras": _sunras,
}  # fmt: skip


# --------------------------------------------------------------------------- probes
def orientation_probe(fmt: str) -> tuple[bytes, tuple[int, int]]:
    """A tiny ``fmt`` file (``jpeg`` or ``tiff``) stored 2 rows × 4 columns, orientation 6 (rotate 90°).

    Returns ``(bytes, (rows, cols) as stored)``; decoding it shows whether a decoder
    applies the orientation tag itself.
    """
    rows, cols = 2, 4
    if fmt == "tiff":  # uncompressed 8-bit gray, little-endian, one strip
        entries = [(256, 3, cols), (257, 3, rows), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 0),
                   (274, 3, 6), (277, 3, 1), (278, 3, rows), (279, 4, rows * cols)]  # fmt: skip
        data_at = 8 + 2 + 12 * len(entries) + 4
        ifd = struct.pack("<H", len(entries))
        for tag, typ, value in entries:
            value = data_at if tag == 273 else value
            ifd += struct.pack("<HHI", tag, typ, 1) + (struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value))
        return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + bytes(range(rows * cols)), (rows, cols)
    if fmt == "jpeg":
        import cv2

        ok, buf = cv2.imencode(".jpg", np.zeros((rows * 8, cols * 8), np.uint8))
        if not ok:  # pragma: no cover
            raise RuntimeError("OpenCV cannot encode a JPEG")
        tiff = b"MM\x00*" + struct.pack(">IH", 8, 1) + struct.pack(">HHIHH", ORIENTATION_TAG, 3, 1, 6, 0) + b"\0" * 4
        app1 = b"Exif\x00\x00" + tiff
        raw = buf.tobytes()
        return raw[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + raw[2:], (rows * 8, cols * 8)
    raise ValueError(f"orientation_probe: no probe for {fmt!r}")


# ---------------------------------------------------------------------------- end of the data, frames
def _png_chunks(mv: memoryview):
    """``(type, data_offset, data_length)`` of each PNG chunk, in order; stops at the data's end."""
    i, n = 8, len(mv)
    while i + 8 <= n:
        (length,) = struct.unpack_from(">I", mv, i)
        yield bytes(mv[i + 4:i + 8]), i + 8, length
        i += 12 + length


def _png_has_iend(mv: memoryview) -> bool:
    """Whether the chunk chain reaches a complete IEND chunk (data after it is ignored, as decoders do)."""
    for kind, start, length in _png_chunks(mv):
        if kind == b"IEND":
            return start + length + 4 <= len(mv)
    return False


def _jpeg_scan_start(mv: memoryview) -> int | None:
    """Offset of the first start-of-scan marker (``FF DA``), walking the segments before it."""
    i, n = 2, len(mv)
    while i + 4 <= n:
        if mv[i] != 0xFF:
            return None
        marker = mv[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            i += 2
            continue
        if marker == 0xDA:
            return i
        if marker == 0xD9:
            return None
        (length,) = struct.unpack_from(">H", mv, i + 2)
        if length < 2:
            return None
        i += 2 + length
    return None


def _contains(mv: memoryview, start: int, pattern: bytes) -> bool:
    """Whether ``pattern`` (2 bytes) occurs in ``mv[start:]`` (vectorised, no copy of the data)."""
    a = np.frombuffer(mv, np.uint8)[start:]
    if len(a) < 2:
        return False
    return bool(np.any((a[:-1] == pattern[0]) & (a[1:] == pattern[1])))


def truncation_problem(data: Buffer) -> str | None:
    """Why encoded PNG / JPEG bytes look cut short, or None.

    OpenCV decodes a truncated JPEG (and some truncated PNGs) partially, with
    only a warning on stderr, so the end marker is looked for here: a PNG's
    chunk chain must reach IEND, a JPEG must hold an end-of-image marker after
    its first scan.  Data after the end (the video of a phone's "motion photo",
    an appended archive) is accepted, as OpenCV and Pillow accept it.
    """
    mv = _view(data)
    head = bytes(mv[:8])
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        if b"IEND\xaeB`\x82" in bytes(mv[-64:]) or _png_has_iend(mv):
            return None
        return "truncated PNG: no IEND chunk"
    if head.startswith(b"\xff\xd8"):
        if b"\xff\xd9" in bytes(mv[-4096:]):
            return None
        sos = _jpeg_scan_start(mv)
        if sos is not None and _contains(mv, sos + 2, b"\xff\xd9"):
            return None
        return "truncated JPEG: no end-of-image marker"
    return None


def frame_count(data: Buffer, limit: int = 10_000) -> int:
    """How many frames / pages the encoded image holds (APNG ``acTL``, animated WebP ``ANMF``
    chunks, TIFF IFD chain); 1 for anything else or a malformed header.  OpenCV's
    ``imdecode`` returns the first one only."""
    mv = _view(data)
    try:
        fmt = image_format(mv)
        if fmt == "png":
            for kind, start, length in _png_chunks(mv):
                if kind == b"acTL" and length >= 8:
                    return max(1, struct.unpack_from(">I", mv, start)[0])
                if kind in (b"IDAT", b"IEND"):
                    return 1
            return 1
        if fmt == "webp":
            i, frames = 12, 0
            while i + 8 <= len(mv) and frames < limit:
                kind = bytes(mv[i:i + 4])
                (size,) = struct.unpack_from("<I", mv, i + 4)
                frames += kind == b"ANMF"
                i += 8 + size + (size & 1)
            return max(1, frames)
        if fmt == "tiff":
            return _tiff_pages(mv, limit)
    except (struct.error, ValueError, IndexError):
        return 1
    return 1


def _tiff_pages(mv: memoryview, limit: int) -> int:
    e = {b"II": "<", b"MM": ">"}.get(bytes(mv[:2]))
    if e is None:
        return 1
    (version,) = struct.unpack_from(e + "H", mv, 2)
    if version != 42:  # BigTIFF: not walked
        return 1
    (ifd,) = struct.unpack_from(e + "I", mv, 4)
    pages, seen = 0, set()
    while ifd and ifd not in seen and pages < limit:
        seen.add(ifd)
        pages += 1
        (count,) = struct.unpack_from(e + "H", mv, ifd)
        (ifd,) = struct.unpack_from(e + "I", mv, ifd + 2 + 12 * count)
    return max(1, pages)
