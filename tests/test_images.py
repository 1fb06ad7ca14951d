"""Photos in: every common encoding decodes to the right pixels, high bit depth is scaled (not clipped), formats
only OpenCV knows are read, and every broken or unusable file is an ``ImageError`` naming the file and why.

All files are generated here from scikit-image's astronaut (a real face photo, public domain)."""
from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image, features
from skimage import data

from stream.media.images import MAX_ASPECT, MIN_SIDE, ImageError, load_image, to_uint8


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return data.astronaut()


def bgr_of(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[:, :, ::-1])


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def grey_of(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).convert("L"))


# --------------------------------------------------------------------- high bit depth
def test_16bit_png_of_the_astronaut_gives_a_face(tmp_path, rgb, analyzer):
    p = tmp_path / "astro16.png"
    assert cv2.imwrite(str(p), bgr_of(rgb).astype(np.uint16) * 257)
    img = load_image(p)
    assert img.dtype == np.uint8 and mean_abs(img, bgr_of(rgb)) < 0.5
    faces = analyzer.analyze(img)
    assert len(faces) == 1 and faces[0].det_score > 0.9


def test_16bit_grey_tiff_and_png_are_scaled_not_clipped(tmp_path, rgb, analyzer):
    grey16 = grey_of(rgb).astype(np.uint16) * 257
    tif, png = tmp_path / "grey16.tif", tmp_path / "grey16.png"
    Image.fromarray(grey16).save(tif)
    assert cv2.imwrite(str(png), grey16)
    assert Image.open(tif).mode.startswith("I;16")  # the mode that was clipped to white before
    for p in (tif, png):
        img = load_image(p)
        assert img.shape == rgb.shape and mean_abs(img[:, :, 0], grey_of(rgb)) < 0.5, p
        assert (img[:, :, 0] == img[:, :, 2]).all()
    assert len(analyzer.analyze(load_image(tif))) == 1


def test_16bit_rgba_is_composited_on_white(tmp_path, rgb):
    bgra = np.dstack([bgr_of(rgb), np.full(rgb.shape[:2], 255, np.uint8)]).astype(np.uint16) * 257
    bgra[:50, :, 3] = 0
    p = tmp_path / "rgba16.png"
    assert cv2.imwrite(str(p), bgra)
    img = load_image(p)
    assert (img[:50] == 255).all() and mean_abs(img[50:], bgr_of(rgb)[50:]) < 0.5


@pytest.mark.parametrize("ext", [".pfm", ".hdr"])
def test_formats_only_opencv_reads_are_decoded(tmp_path, rgb, ext, analyzer):
    p = tmp_path / f"astro{ext}"
    assert cv2.imwrite(str(p), bgr_of(rgb).astype(np.float32) / 255.0)
    with pytest.raises(Exception):  # the premise: Pillow does not know it
        Image.open(p)
    img = load_image(p)
    assert img.shape == rgb.shape and img.dtype == np.uint8 and mean_abs(img, bgr_of(rgb)) < 2.0
    if ext == ".pfm":
        assert len(analyzer.analyze(img)) == 1
        grey = tmp_path / "grey.pfm"  # one channel: expanded to three
        assert cv2.imwrite(str(grey), grey_of(rgb).astype(np.float32) / 255.0)
        img = load_image(grey)
        assert img.shape == rgb.shape and mean_abs(img[:, :, 0], grey_of(rgb)) < 1.0
        assert (img[:, :, 0] == img[:, :, 2]).all()


def test_to_uint8_uses_the_full_range():
    assert to_uint8(np.array([0, 257, 32896, 65535], np.uint16)).tolist() == [0, 1, 128, 255]
    assert to_uint8(np.array([0.0, 0.5, 1.0, 7.0, np.nan], np.float32)).tolist() == [0, 128, 255, 255, 0]
    assert to_uint8(np.array([0, 200, 255], np.int32)).tolist() == [0, 200, 255]  # 8-bit data in 32 bits
    assert to_uint8(np.array([0, 65535], np.int32)).tolist() == [0, 255]  # 16-bit data in 32 bits


# --------------------------------------------------------------------- 8-bit modes Pillow handles
def test_alpha_grey_and_palette_modes(tmp_path, rgb):
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:40, :, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    la = np.dstack([grey_of(rgb), np.full(rgb.shape[:2], 255, np.uint8)])
    la[:, :30, 1] = 0
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(tmp_path / "p.png")
    Image.fromarray(grey_of(rgb)).save(tmp_path / "grey.jpg", quality=95)
    Image.fromarray(rgb).save(tmp_path / "anim.gif")

    img = load_image(tmp_path / "rgba.png")
    assert (img[:40] == 255).all() and mean_abs(img[40:], bgr_of(rgb)[40:]) == 0
    img = load_image(tmp_path / "la.png")
    assert (img[:, :30] == 255).all() and mean_abs(img[:, 30:, 1], grey_of(rgb)[:, 30:]) == 0
    for name, tolerance in (("p.png", 6.0), ("anim.gif", 6.0)):
        img = load_image(tmp_path / name)
        assert img.shape == rgb.shape and mean_abs(img, bgr_of(rgb)) < tolerance, name
    img = load_image(tmp_path / "grey.jpg")
    assert img.shape == rgb.shape and mean_abs(img[:, :, 1], grey_of(rgb)) < 2.0


def test_cmyk_jpeg(tmp_path, rgb):
    p = tmp_path / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(p, quality=95)
    assert Image.open(p).mode == "CMYK"
    img = load_image(p)
    assert img.shape == rgb.shape and mean_abs(img, bgr_of(rgb)) < 4.0


def test_exif_orientation_is_applied(tmp_path, rgb, analyzer):
    """A phone stores the sensor's pixels and an Orientation tag; 6 means 'rotate 90 degrees clockwise to view'."""
    p = tmp_path / "phone.jpg"
    sensor = np.ascontiguousarray(np.rot90(rgb, 1))  # what the phone stored: the face lying on its side
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(sensor).save(p, quality=95, exif=exif)
    img = load_image(p)
    assert img.shape == rgb.shape and mean_abs(img, bgr_of(rgb)) < 4.0
    assert len(analyzer.analyze(img)) == 1


@pytest.mark.skipif(not features.check("webp"), reason="this Pillow has no WebP support")
def test_webp(tmp_path, rgb):
    p = tmp_path / "astro.webp"
    Image.fromarray(rgb).save(p, quality=95)
    assert mean_abs(load_image(p), bgr_of(rgb)) < 4.0


# --------------------------------------------------------------------- refused, naming the file and why
def test_broken_files_are_refused_with_the_reason(tmp_path, rgb):
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90)
    jpeg = buf.getvalue()
    (tmp_path / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("this is not a jpeg\n")
    (tmp_path / "adir.jpg").mkdir()
    cases = {
        "truncated.jpg": "truncated", "zero.jpg": "empty file (0 bytes)", "text.jpg": "not an image file",
        "adir.jpg": "is a directory", "missing.jpg": "no such file",
    }
    for name, why in cases.items():
        with pytest.raises(ImageError) as err:
            load_image(tmp_path / name)
        msg = str(err.value)
        assert msg.startswith(str(tmp_path / name) + ":") and why in msg and "\n" not in msg, msg


@pytest.mark.parametrize("w,h,why", [
    (20000, 1, "aspect ratio too extreme (20000x1"), (1, 20000, "aspect ratio too extreme (1x20000"),
    (420, 20, "aspect ratio too extreme (420x20"), (10, 10, "image too small (10x10"),
    (15, 200, "image too small (15x200"),
])
@pytest.mark.parametrize("ext", [".png", ".pfm"])  # through Pillow, and through the OpenCV fallback
def test_extreme_sizes_are_refused(tmp_path, w, h, why, ext):
    p = tmp_path / f"odd{ext}"
    pixels = np.full((h, w, 3), 128, np.uint8)
    assert cv2.imwrite(str(p), pixels if ext == ".png" else pixels.astype(np.float32) / 255)
    with pytest.raises(ImageError, match=rf"^{p}: .*") as err:
        load_image(p)
    assert why in str(err.value)


def test_limits_let_ordinary_shapes_through(tmp_path):
    for w, h in ((MIN_SIDE, MIN_SIDE), (int(MIN_SIDE * MAX_ASPECT), MIN_SIDE), (6000, 400)):
        p = tmp_path / f"{w}x{h}.png"
        cv2.imwrite(str(p), np.zeros((h, w, 3), np.uint8))
        assert load_image(p).shape == (h, w, 3)
