"""Randomly corrupted image bytes: ``read_image`` decodes them or raises ``ImageReadError``, nothing else.

Seeded RNG and a bounded count (40 variants per source format), so failures reproduce exactly.
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imc.images import ImageReadError, read_image

from .corpus import TINY, assert_complete_csv, fountain_files, run_cli, save_jpeg, small_rgb

VARIANTS_PER_SOURCE = 40


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def source_files(rgb: np.ndarray) -> dict[str, bytes]:
    """Valid files of the formats and modes the pipeline meets, small enough to decode in ms."""
    img = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = 6
    gray16 = Image.fromarray(np.asarray(img.convert("L"), dtype=np.uint16) * 257)
    return {
        "jpeg": encode(img, "JPEG", quality=85),
        "jpeg_progressive_exif": encode(img, "JPEG", quality=85, progressive=True, exif=exif.tobytes()),
        "jpeg_cmyk": encode(img.convert("CMYK"), "JPEG"),
        "png_rgba": encode(img.convert("RGBA"), "PNG"),
        "png_16bit": encode(gray16, "PNG"),
        "tiff_exif": encode(img, "TIFF", exif=exif.tobytes()),
        "webp": encode(img, "WEBP"),
        "bmp": encode(img, "BMP"),
    }


def corrupt(data: bytes, rng: np.random.Generator) -> bytes:
    """One of: bit flips anywhere, bit flips in the header, truncation, a run of header garbage."""
    d = bytearray(data)
    kind = int(rng.integers(4))
    if kind == 0:
        for _ in range(int(rng.integers(1, 20))):
            d[int(rng.integers(len(d)))] ^= 1 << int(rng.integers(8))
    elif kind == 1:
        for _ in range(int(rng.integers(1, 6))):
            d[int(rng.integers(min(len(d), 400)))] ^= 1 << int(rng.integers(8))
    elif kind == 2:
        d = d[: int(rng.integers(1, len(d)))]
    else:
        start, n = int(rng.integers(0, min(300, len(d)))), int(rng.integers(1, 32))
        d[start:start + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    return bytes(d)


def tiff_with_float_strip_offset(rgb: np.ndarray) -> bytes:
    """A TIFF whose StripOffsets tag claims the DOUBLE type: Pillow then seeks to a float (TypeError)."""
    data = bytearray(encode(Image.fromarray(rgb), "TIFF"))
    assert data[:2] == b"II"
    (ifd,) = struct.unpack_from("<I", data, 4)
    (n,) = struct.unpack_from("<H", data, ifd)
    for i in range(n):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] == 273:  # StripOffsets
            struct.pack_into("<H", data, entry + 2, 12)  # type LONG -> DOUBLE
            return bytes(data)
    raise AssertionError("no StripOffsets tag")


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return small_rgb(fountain_files(1)[0], width=160)


def read_or_clean_error(path: Path, **kw) -> str:
    try:
        loaded = read_image(path, **kw)
    except ImageReadError as exc:
        assert str(path) in str(exc)  # the message names the file
        return "error"
    assert loaded.rgb.dtype == np.uint8 and loaded.rgb.ndim == 3 and loaded.rgb.shape[2] == 3
    assert max(loaded.rgb.shape[:2]) <= (kw.get("resize_max") or 10**9)
    assert all(np.isfinite(loaded.scale)) and min(loaded.scale) > 0
    return "decoded"


def test_fuzzed_bytes_decode_or_raise_image_read_error(tmp_path, rgb):
    rng = np.random.default_rng(2023)
    outcomes: dict[str, int] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about corrupt EXIF / TIFF tags: fine
        for name, data in source_files(rgb).items():
            for i in range(VARIANTS_PER_SOURCE):
                path = tmp_path / f"{name}_{i}.img"
                path.write_bytes(corrupt(data, rng))
                outcome = read_or_clean_error(path, resize_max=64, exif_transpose=bool(i % 2))
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
    # both outcomes occur: the corruption is neither always fatal nor always harmless
    assert outcomes.get("error", 0) > 20 and outcomes.get("decoded", 0) > 20, outcomes


def test_corrupt_tiff_tag_type_is_an_image_read_error(tmp_path, rgb):
    path = tmp_path / "bad_tag.tif"
    path.write_bytes(tiff_with_float_strip_offset(rgb))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ImageReadError, match="bad_tag.tif"):
            read_image(path, resize_max=64)


def test_extreme_aspect_ratio_jpeg_decodes(tmp_path, rgb):
    """A 1000x16 JPEG read at resize_max=32: the reduced-size JPEG draft must not ask for 0 rows."""
    path = save_jpeg(np.ascontiguousarray(np.resize(rgb, (16, 1000, 3))), tmp_path / "strip.jpg")
    loaded = read_image(path, resize_max=32)
    assert loaded.original_size == (1000, 16) and loaded.rgb.shape[1] == 32


def test_scene_with_corrupted_files_still_writes_a_complete_csv(tmp_path):
    rng = np.random.default_rng(7)
    images = tmp_path / "data" / "fuzz" / "scene" / "images"
    images.mkdir(parents=True)
    for f in fountain_files(3):
        save_jpeg(small_rgb(f), images / f.name)
    good = (images / "0000.jpg").read_bytes()
    for i in range(4):
        (images / f"corrupt_{i}.jpg").write_bytes(corrupt(good, rng))
    listed = sorted(p.relative_to(tmp_path / "data").as_posix() for p in images.iterdir())
    run_cli([f"data.root={tmp_path / 'data'}", f"output={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}",
             *TINY], log_path=tmp_path / "stdout.txt")
    assert_complete_csv(tmp_path / "run" / "submission.csv", listed)
