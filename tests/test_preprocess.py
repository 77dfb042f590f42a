"""Preprocessing: bit-identical to the recipe for RGB, a documented rule for every other mode."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vggsim import PreprocessSpec, load_image, to_rgb


def recipe(path_or_image: Path | Image.Image) -> np.ndarray:
    """The recipe as written: Pillow's default resize, then img_to_array (np.asarray float32)."""
    image = Image.open(path_or_image) if isinstance(path_or_image, Path) else path_or_image
    return np.asarray(image.resize((224, 224)), dtype=np.float32)


def test_rgb_photos_are_bit_identical_to_the_recipe(photos: list[Path]) -> None:
    for path in photos:
        if Image.open(path).mode != "RGB":
            continue
        ours = load_image(path)
        assert ours.dtype == np.float32 and ours.shape == (224, 224, 3)
        assert np.array_equal(ours, recipe(path)), path


def test_bit_identical_to_keras_img_to_array(photos: list[Path]) -> None:
    keras_image = pytest.importorskip("keras.utils")
    path = photos[0]
    expected = keras_image.img_to_array(Image.open(path).resize((224, 224)))
    assert np.array_equal(load_image(path), expected)


def test_every_source_kind_gives_the_same_array(photos: list[Path]) -> None:
    path = photos[0]
    data = path.read_bytes()
    expected = load_image(path)
    for source in (str(path), data, bytearray(data), memoryview(data), io.BytesIO(data),
                   Image.open(path)):
        assert np.array_equal(load_image(source), expected)


def test_the_filter_matters_so_it_is_passed_explicitly(photos: list[Path]) -> None:
    bicubic = load_image(photos[0])
    bilinear = load_image(photos[0], PreprocessSpec(resample="bilinear"))
    assert not np.array_equal(bicubic, bilinear)
    expected = np.asarray(Image.open(photos[0]).resize((224, 224), Image.Resampling.BILINEAR), np.float32)
    assert np.array_equal(bilinear, expected)


def _all_modes(rgb: Image.Image) -> dict[str, Image.Image]:
    rgba = rgb.convert("RGBA")
    rgba.putalpha(128)
    palette_transparent = rgb.convert("P")
    palette_transparent.info["transparency"] = 0
    grey = np.asarray(rgb.convert("L"), dtype=np.uint16) * 257
    return {
        "1": rgb.convert("1"), "L": rgb.convert("L"), "LA": rgba.convert("LA"),
        "P": rgb.convert("P"), "P+transparency": palette_transparent, "PA": rgba.convert("PA"),
        "RGBA": rgba, "CMYK": rgb.convert("CMYK"), "YCbCr": rgb.convert("YCbCr"),
        "I;16": Image.fromarray(grey), "I": Image.fromarray(grey.astype(np.int32)),
        "F": Image.fromarray(grey.astype(np.float32) / 257.0),
    }


def test_every_mode_gives_an_rgb_float_array(rgb_image: Image.Image) -> None:
    for mode, image in _all_modes(rgb_image).items():
        array = load_image(image)
        assert array.shape == (224, 224, 3) and array.dtype == np.float32, mode
        assert 0 <= array.min() and array.max() <= 255, mode


def test_grey_modes_replicate_the_channel(rgb_image: Image.Image) -> None:
    grey = rgb_image.convert("L")
    array = load_image(grey)
    assert np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 1], array[..., 2])
    assert np.array_equal(array[..., 0], np.asarray(grey.resize((224, 224), Image.Resampling.BICUBIC), np.float32))


def test_sixteen_bit_is_divided_by_257(rgb_image: Image.Image) -> None:
    grey8 = np.asarray(rgb_image.convert("L"))
    wide = Image.fromarray(grey8.astype(np.uint16) * 257)
    assert np.array_equal(np.asarray(to_rgb(wide))[..., 0], grey8)
    eight_bit_in_int = Image.fromarray(grey8.astype(np.int32))
    assert np.array_equal(np.asarray(to_rgb(eight_bit_in_int))[..., 0], grey8)


def test_alpha_white_composites_and_drop_discards() -> None:
    clear_red = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert to_rgb(clear_red, "white").getpixel((0, 0)) == (255, 255, 255)
    assert to_rgb(clear_red, "drop").getpixel((0, 0)) == (255, 0, 0)
    half_black = Image.new("LA", (4, 4), (0, 128))
    value = to_rgb(half_black, "white").getpixel((0, 0))
    assert value[0] == value[1] == value[2] and 120 <= value[0] <= 135


def test_palette_transparency_goes_through_alpha() -> None:
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0] * 256)
    image.info["transparency"] = 0
    assert to_rgb(image, "white").getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_off_by_default_and_on_when_asked(tmp_path: Path) -> None:
    wide = Image.new("RGB", (300, 100), (10, 200, 30))
    wide.paste((250, 0, 0), (0, 0, 100, 100))  # red block at the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    path = tmp_path / "rotated.jpg"
    wide.save(path, exif=exif.tobytes(), quality=95)
    plain = load_image(path)
    turned = load_image(path, PreprocessSpec(exif_transpose=True))
    assert plain[112, 10, 0] > 200  # red on the left as stored
    assert turned[10, 112, 0] > 200 and turned[112, 10, 0] < 100  # red on top once turned


def test_first_frame_of_animations_and_multipage_files(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    gif, tiff = tmp_path / "anim.gif", tmp_path / "pages.tif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    frames[0].save(tiff, save_all=True, append_images=frames[1:])
    for path in (gif, tiff):
        array = load_image(path)
        assert array[..., 0].mean() > 200 and array[..., 2].mean() < 50, path


def test_jpeg_draft_is_close_but_not_identical(tmp_path: Path, photos: list[Path]) -> None:
    big = Image.open(photos[0]).resize((2000, 1400), Image.Resampling.BICUBIC)
    path = tmp_path / "big.jpg"
    big.save(path, quality=92)
    exact, draft = load_image(path), load_image(path, PreprocessSpec(jpeg_draft=True))
    assert not np.array_equal(exact, draft)
    assert np.abs(exact - draft).mean() < 3.0


def test_spec_round_trips_and_validates() -> None:
    spec = PreprocessSpec(alpha="drop", exif_transpose=True)
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="resample"):
        PreprocessSpec(resample="cubic")
    with pytest.raises(ValueError, match="alpha"):
        PreprocessSpec(alpha="black")
