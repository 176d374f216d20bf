"""Masks: the DAVIS palette, every kind of mask file, size checks, bad files, atomic PNG writes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from synthetic_media import moving_shapes

from seggpt_video.errors import UserError
from seggpt_video.io.masks import (
    DAVIS_PALETTE,
    MAX_OBJECTS,
    object_ids,
    read_mask,
    require_objects,
    write_palette_png,
)


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    _, label_maps = moving_shapes(num_frames=1, height=48, width=64, num_objects=3, seed=4)
    assert object_ids(label_maps[0]) == [1, 2, 3]
    return label_maps[0]


def test_davis_palette_is_the_voc_bit_twiddling_map():
    assert DAVIS_PALETTE.shape == (256, 3) and DAVIS_PALETTE.dtype == np.uint8
    expected = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0), 4: (0, 0, 128)}
    expected |= {5: (128, 0, 128), 8: (64, 0, 0), 255: (224, 224, 192)}
    for index, colour in expected.items():
        assert tuple(DAVIS_PALETTE[index]) == colour
    assert len({tuple(colour) for colour in DAVIS_PALETTE}) == 256
    assert not DAVIS_PALETTE.flags.writeable


def test_palette_png_round_trip(tmp_path, labels):
    path = tmp_path / "00000.png"
    write_palette_png(path, labels)
    with Image.open(path) as image:
        assert image.mode == "P"
        palette = np.array(image.getpalette()[: 256 * 3], dtype=np.uint8).reshape(256, 3)
        assert np.array_equal(palette, DAVIS_PALETTE)
        assert np.array_equal(np.asarray(image), labels)
    assert np.array_equal(read_mask(path), labels)


def test_palette_index_is_the_object_id_whatever_the_palette(tmp_path, labels):
    image = Image.fromarray(labels * 2)  # ids 2, 4, 6
    image.putpalette([255, 255, 255] * 256)  # every colour white: only indices tell objects apart
    image.save(tmp_path / "m.png")
    assert np.array_equal(read_mask(tmp_path / "m.png"), labels * 2)


def test_grayscale_0_255_is_one_object_as_in_davis_2016(tmp_path, labels):
    Image.fromarray(((labels > 0) * 255).astype(np.uint8)).save(tmp_path / "m.png")
    assert np.array_equal(read_mask(tmp_path / "m.png"), (labels > 0).astype(np.uint8))


def test_grayscale_jpeg_noise_is_thresholded_at_half(tmp_path, labels):
    buffer = io.BytesIO()
    Image.fromarray(((labels > 0) * 255).astype(np.uint8)).save(buffer, format="JPEG", quality=60)
    (tmp_path / "m.jpg").write_bytes(buffer.getvalue())
    with Image.open(tmp_path / "m.jpg") as image:
        assert len(np.unique(np.asarray(image))) > 10  # the noise is really there
    mask = read_mask(tmp_path / "m.jpg")
    assert set(np.unique(mask)) == {0, 1}
    assert np.mean(mask != (labels > 0)) < 0.02


def test_grayscale_below_128_is_a_label_map(tmp_path, labels):
    Image.fromarray(labels).save(tmp_path / "ids.png")  # values 0..3 saved as gray
    assert np.array_equal(read_mask(tmp_path / "ids.png"), labels)


def test_16_bit_grayscale(tmp_path, labels):
    Image.fromarray(((labels > 0) * 65535).astype(np.uint16)).save(tmp_path / "m16.png")
    assert np.array_equal(read_mask(tmp_path / "m16.png"), (labels > 0).astype(np.uint8))


def test_rgb_in_davis_colours_keeps_the_palette_ids(tmp_path, labels):
    ids = np.where(labels == 3, 7, labels)  # ids 1, 2, 7: not consecutive
    Image.fromarray(DAVIS_PALETTE[ids]).save(tmp_path / "rgb.png")
    assert np.array_equal(read_mask(tmp_path / "rgb.png"), ids)


def test_rgb_in_other_colours_numbers_them_by_first_appearance(tmp_path):
    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[0, 3] = (10, 250, 10)  # first in raster order -> 1
    rgb[1, 0] = (250, 10, 10)  # -> 2
    rgb[2, 2] = (128, 0, 0)  # a DAVIS colour among non-palette ones: numbered like the rest -> 3
    rgb[3, 0] = (10, 250, 10)
    rgb[3, 4] = (10, 10, 250)  # -> 4
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    expected = np.zeros((4, 5), dtype=np.uint8)
    expected[0, 3], expected[1, 0], expected[2, 2], expected[3, 0], expected[3, 4] = 1, 2, 3, 1, 4
    assert np.array_equal(read_mask(tmp_path / "rgb.png"), expected)


def test_rgb_white_on_black_is_read_as_grayscale(tmp_path, labels):
    white = np.repeat(((labels > 0) * 255).astype(np.uint8)[..., None], 3, axis=2)
    Image.fromarray(white).save(tmp_path / "white.png")
    assert np.array_equal(read_mask(tmp_path / "white.png"), (labels > 0).astype(np.uint8))


def test_rgba_transparent_pixels_are_background(tmp_path, labels):
    rgba = np.zeros((*labels.shape, 4), dtype=np.uint8)
    rgba[..., :3] = DAVIS_PALETTE[labels]
    rgba[..., 3] = 255
    rgba[labels == 2, 3] = 0  # object 2 painted but transparent
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert np.array_equal(read_mask(tmp_path / "rgba.png"), np.where(labels == 2, 0, labels))


def test_size_mismatch_names_both_sizes_and_the_option(tmp_path, labels):
    write_palette_png(tmp_path / "m.png", labels)
    with pytest.raises(UserError) as caught:
        read_mask(tmp_path / "m.png", size=(96, 128))
    message = str(caught.value)
    assert "m.png: the mask is 64x48 but the video is 128x96" in message
    assert "--resize-mask" in message


def test_resize_uses_nearest_neighbour(tmp_path, labels):
    write_palette_png(tmp_path / "m.png", labels)
    big = read_mask(tmp_path / "m.png", size=(96, 128), resize=True)
    assert big.shape == (96, 128)
    assert np.array_equal(big[::2, ::2], labels)  # exact 2x: every pixel copied, no new ids
    odd = read_mask(tmp_path / "m.png", size=(31, 45), resize=True)
    assert odd.shape == (31, 45) and set(np.unique(odd)) <= {0, 1, 2, 3}
    assert np.array_equal(read_mask(tmp_path / "m.png", size=(48, 64)), labels)


def test_jpeg_colour_mask_is_refused_with_the_colour_count(tmp_path, labels):
    Image.fromarray(DAVIS_PALETTE[labels]).save(tmp_path / "m.jpg", quality=75)
    with pytest.raises(UserError, match=r"m\.jpg: \d+ distinct colours.*JPEG-compressed"):
        read_mask(tmp_path / "m.jpg")


def test_too_many_palette_indices_is_not_a_mask(tmp_path):
    assert MAX_OBJECTS < 199
    indices = np.arange(48 * 64, dtype=np.int64).reshape(48, 64) % 200
    write_palette_png(tmp_path / "busy.png", indices.astype(np.uint8))
    with pytest.raises(UserError, match=r"busy\.png: 199 distinct palette indices"):
        read_mask(tmp_path / "busy.png")


def test_unreadable_and_missing_files(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(UserError, match=r"broken\.png: cannot read the mask as an image"):
        read_mask(tmp_path / "broken.png")
    with pytest.raises(UserError, match=r"absent\.png: no such mask file"):
        read_mask(tmp_path / "absent.png")


def test_object_ids_and_empty_masks(labels):
    assert object_ids(np.where(labels == 2, 9, labels).astype(np.uint8)) == [1, 3, 9]
    assert require_objects(labels, "first.png") == [1, 2, 3]
    with pytest.raises(UserError, match=r"first\.png: the mask is empty"):
        require_objects(np.zeros((4, 4), dtype=np.uint8), "first.png")


def test_write_palette_png_is_atomic(tmp_path, labels, monkeypatch):
    path = tmp_path / "out" / "00000.png"
    write_palette_png(path, labels)
    before = path.read_bytes()

    def crash_half_way(image, target, *args, **kwargs):
        with open(target, "wb") as file:
            file.write(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", crash_half_way)
    with pytest.raises(KeyboardInterrupt):
        write_palette_png(path, np.zeros_like(labels))
    monkeypatch.undo()
    assert path.read_bytes() == before  # the old file is intact
    assert sorted(p.name for p in path.parent.iterdir()) == ["00000.png"]  # no leftovers
    with pytest.raises(KeyboardInterrupt):
        monkeypatch.setattr(Image.Image, "save", crash_half_way)
        write_palette_png(tmp_path / "out" / "00001.png", labels)
    assert not (tmp_path / "out" / "00001.png").exists()


def test_write_palette_png_rejects_non_label_arrays(tmp_path):
    with pytest.raises(ValueError, match="2-D uint8"):
        write_palette_png(tmp_path / "x.png", np.zeros((4, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="2-D uint8"):
        write_palette_png(tmp_path / "x.png", np.zeros((4, 4, 3), dtype=np.uint8))
