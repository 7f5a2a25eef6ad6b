"""Image readers: sizes from headers, the pixel limit before decoding, decoder errors,
non-finite float pixels, EXIF/TIFF orientation."""
from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from imdn_plugin.data import headers, imageio
from imdn_plugin.data.imageio import read, read_image
from imdn_plugin.errors import ConfigError, ImageReadError
from imdn_plugin.integration.images import imfrombytes

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (13, 17, 3), dtype=np.uint8)  # 17 wide, 13 high

# EXIF orientation -> displayed image, written with numpy's own rotations (TIFF 6.0, tag 274).
DISPLAY: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda a: a,
    2: np.fliplr,
    3: lambda a: np.rot90(a, 2),
    4: np.flipud,
    5: lambda a: np.fliplr(np.rot90(a, -1)),  # transpose
    6: lambda a: np.rot90(a, -1),  # 90° clockwise
    7: lambda a: np.flipud(np.rot90(a, -1)),  # transverse
    8: lambda a: np.rot90(a, 1),  # 90° counter-clockwise
}


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid-CRC PNG header declaring ``width × height`` RGB pixels (70 bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return imageio.PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 16)) + png_chunk(b"IEND", b"")


def huge_bmp(width: int = 100_000, height: int = 100_000) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, -height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + 64, 0, 0, 14 + len(info)) + info + b"\0" * 64


def huge_jpeg() -> bytes:
    """A real JPEG whose SOF0 frame header is patched to 60000 × 60000."""
    raw = bytearray(cv2.imencode(".jpg", RGB)[1].tobytes())
    sof = raw.index(b"\xff\xc0")
    raw[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)
    return bytes(raw)


def huge_webp() -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(np.dstack([RGB, RGB[..., :1]])).save(buf, "WEBP")  # RGBA: VP8X header
    raw = bytearray(buf.getvalue())
    assert raw[12:16] == b"VP8X"
    raw[24:30] = (16383).to_bytes(3, "little") + (16384).to_bytes(3, "little")  # 16384 x 16385: one row above 2**28
    return bytes(raw)


def huge_tiff() -> bytes:
    raw = bytearray(cv2.imencode(".tiff", RGB)[1].tobytes())
    assert raw[:4] == b"II*\x00"
    (ifd,) = struct.unpack_from("<I", raw, 4)
    (count,) = struct.unpack_from("<H", raw, ifd)
    for k in range(count):
        at = ifd + 2 + 12 * k
        tag, typ = struct.unpack_from("<HH", raw, at)
        if tag in (256, 257):
            raw[at + 2:at + 12] = struct.pack("<HII", 4, 1, 70000)  # LONG 70000
    return bytes(raw)


def encoded_samples() -> dict[str, bytes]:
    out = {}
    for ext, img in [(".png", RGB), (".jpg", RGB), (".bmp", RGB), (".tiff", RGB), (".ppm", RGB), (".pgm", RGB[..., 0]),
                     (".pbm", RGB[..., 0]), (".sr", RGB), (".hdr", RGB.astype(np.float32) / 255),
                     (".pfm", RGB.astype(np.float32) / 255)]:  # fmt: skip
        ok, buf = cv2.imencode(ext, img)
        assert ok, ext
        out[ext] = buf.tobytes()
    out["webp-lossy"] = cv2.imencode(".webp", RGB, [cv2.IMWRITE_WEBP_QUALITY, 90])[1].tobytes()
    out["webp-lossless"] = cv2.imencode(".webp", RGB, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()
    for name, fmt, kw in [("webp-vp8x", "WEBP", {"exif": b"Exif\0\0MM\0*\0\0\0\x08\0\0\0\0\0\0"}),
                          ("jpeg-progressive", "JPEG", {"progressive": True}), ("bmp-pillow", "BMP", {})]:  # fmt: skip
        buf = io.BytesIO()
        PILImage.fromarray(RGB).save(buf, fmt, **kw)
        out[name] = buf.getvalue()
    for name, kw in [("tiff-bigtiff", {"bigtiff": True}), ("tiff-big-endian", {"byteorder": ">"})]:
        buf = io.BytesIO()
        tifffile.imwrite(buf, RGB, photometric="rgb", **kw)
        out[name] = buf.getvalue()
    return out


@pytest.mark.parametrize("name, data", sorted(encoded_samples().items()))
def test_header_size_is_the_decoded_size(name: str, data: bytes) -> None:
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded is not None, name
    assert headers.image_size(data) == (decoded.shape[1], decoded.shape[0]) == (17, 13)


def test_unknown_or_malformed_headers_give_no_size() -> None:
    assert headers.image_size(b"") is None
    assert headers.image_size(b"not an image at all") is None
    assert headers.image_size(imageio.PNG_SIGNATURE + b"\0\0") is None  # cut inside IHDR
    assert headers.image_size(b"\xff\xd8\xff\xe0\x00") is None  # JPEG cut before any frame


@pytest.mark.parametrize("make", [huge_png, huge_bmp, huge_jpeg, huge_webp, huge_tiff])
def test_huge_header_is_refused_before_decoding(make, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bomb.img"
    path.write_bytes(make())

    def no_decode(*args, **kwargs):
        raise AssertionError("the decoder ran (and would allocate the declared pixels)")

    monkeypatch.setattr(cv2, "imdecode", no_decode)
    with pytest.raises(ImageReadError) as info:
        read(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: cannot decode image (") and "\n" not in msg
    assert "pixels, above the limit of 268,435,456; set IMDN_MAX_PIXELS to allow more" in msg


def test_every_reader_refuses_a_huge_image(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(huge_png())
    with pytest.raises(ImageReadError, match=r"bomb\.png: cannot decode image \(100000x100000 = 10,000,000,000 pixels"):
        imageio.decode(path.read_bytes(), str(path))
    with pytest.raises(ImageReadError, match=r"cannot read image: .*bomb\.png \(100000x100000"):
        read_image(path)  # data preparation

    class Named(bytes):
        source = "HR/bomb.png"

    with pytest.raises(ImageReadError, match=r"^HR/bomb\.png: cannot decode image \(100000x100000"):
        imfrombytes(Named(path.read_bytes()))  # BasicSR's test/validation datasets


def test_limit_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ok, too_big = tmp_path / "ok.png", tmp_path / "big.png"
    cv2.imwrite(str(ok), RGB[:10, :10])
    cv2.imwrite(str(too_big), RGB[:10, :11])
    monkeypatch.setenv("IMDN_MAX_PIXELS", "100")
    assert read(ok).bgr.shape == (10, 10, 3)
    with pytest.raises(ImageReadError, match=r"big\.png: cannot decode image \(11x10 = 110 pixels, above the limit of 100;"):
        read(too_big)
    # A format whose header is not parsed is still held to the limit, after decoding.
    monkeypatch.setattr(headers, "image_size", lambda data: None)
    with pytest.raises(ImageReadError, match=r"11x10 = 110 pixels"):
        read(too_big)
    for bad in ("lots", "0", "-5", "1e9"):
        monkeypatch.setenv("IMDN_MAX_PIXELS", bad)
        with pytest.raises(ConfigError, match=f"IMDN_MAX_PIXELS='{bad}': must be a positive whole number"):
            read(ok)


def test_opencv_errors_become_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Past our limit, OpenCV's own (2**30 pixels) raises cv2.error: caught and named.
    monkeypatch.setenv("IMDN_MAX_PIXELS", str(10**11))
    path = tmp_path / "bomb.png"
    path.write_bytes(huge_png())
    with pytest.raises(ImageReadError) as info:
        read(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: cannot decode image (OpenCV refused it: ") and "\n" not in msg
    assert "CV_IO_MAX_IMAGE_PIXELS" in msg


@pytest.mark.parametrize("ext, value", [(".tiff", np.nan), (".tiff", np.inf), (".pfm", -np.inf)])
def test_non_finite_float_pixels_are_refused(tmp_path: Path, ext: str, value: float) -> None:
    img = RNG.random((6, 7, 3)).astype(np.float32)
    path = tmp_path / f"f{ext}"
    assert cv2.imwrite(str(path), img)
    assert np.allclose(read(path).bgr, img, atol=1e-6)  # finite: read as it is
    img[4, 5, 1] = value
    assert cv2.imwrite(str(path), img)
    with pytest.raises(ImageReadError, match=rf"^{path}: 1 non-finite sample\(s\) \(NaN/Inf\) .* first at row 4, column 5"):
        read(path)


def jpeg_with_orientation(rgb: np.ndarray, orientation: int) -> bytes:
    buf = io.BytesIO()
    exif = PILImage.Exif()
    exif[274] = orientation
    PILImage.fromarray(rgb).save(buf, "JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_exif_orientation(tmp_path: Path, orientation: int) -> None:
    path = tmp_path / "p.jpg"
    path.write_bytes(jpeg_with_orientation(RGB, orientation))
    assert headers.exif_orientation(path.read_bytes()) == orientation
    stored = read(path).bgr  # as stored (OpenCV's IMREAD_UNCHANGED ignores EXIF)
    assert stored.shape == (13, 17, 3)
    shown = read(path, orientation=True).bgr
    np.testing.assert_array_equal(shown, DISPLAY[orientation](stored))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_orientation_is_applied_once(tmp_path: Path, orientation: int) -> None:
    path = tmp_path / "p.tif"
    deep = RNG.integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    tifffile.imwrite(path, deep, photometric="rgb", extratags=[(274, "H", 1, orientation, True)])
    assert headers.exif_orientation(path.read_bytes()) == orientation
    shown = read(path, orientation=True)
    assert shown.bit_depth == 16
    np.testing.assert_array_equal(shown.bgr, DISPLAY[orientation](deep[..., ::-1].astype(np.float32) / 65535))


def test_orientation_absent_or_broken_means_as_stored() -> None:
    assert headers.exif_orientation(cv2.imencode(".png", RGB)[1]) == 1
    assert headers.exif_orientation(cv2.imencode(".jpg", RGB)[1]) == 1
    raw = jpeg_with_orientation(RGB, 6)
    app1 = raw.index(b"Exif\0\0")
    assert headers.exif_orientation(raw[: app1 + 12]) == 1  # EXIF cut short
    assert headers.exif_orientation(jpeg_with_orientation(RGB, 9)) == 1  # not an orientation


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_written_into_the_file_is_png_bytes(dtype, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """write_png_atomic: the pixels png_bytes holds, no temporary left, an existing file kept; and
    when OpenCV cannot write the path, the in-memory encoder replaces whatever it left."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, np.iinfo(dtype).max + 1, (37, 29, 3), dtype=dtype)
    dst = tmp_path / "o.png"
    imageio.write_png_atomic(dst, img, overwrite=False)
    assert np.array_equal(cv2.imread(str(dst), cv2.IMREAD_UNCHANGED), img)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]
    with pytest.raises(FileExistsError):
        imageio.write_png_atomic(dst, img[:5], overwrite=False)
    assert cv2.imread(str(dst), cv2.IMREAD_UNCHANGED).shape == img.shape

    def failing(path: str, arr: np.ndarray, params: list) -> bool:
        Path(path).write_bytes(b"x" * 100_000)  # a partial write, longer than the real PNG
        return False

    monkeypatch.setattr(imageio.cv2, "imwrite", failing)
    imageio.write_png_atomic(dst, img, overwrite=True)
    assert dst.read_bytes() == imageio.png_bytes(img, compress_level=None)
