"""Object masks: the DAVIS palette, reading user masks as object-id maps, writing palette PNGs.

An object-id map (``labels``) is an (H, W) uint8 array: 0 = background, 1..255 = object ids.

How `read_mask` turns a file into ids:

- Palette PNG (mode ``P``, as DAVIS 2017 and YouTube-VOS ship them): the palette index is the id.
- Grayscale: DAVIS 2016 masks are 0/255 with one object, so values above half the range
  (> 127 for 8 bits) are object 1; this also absorbs JPEG noise around 0 and 255. A grayscale
  image whose values are all below 128 is a label map saved as gray (0/1, or 0,1,2,...): the value
  is the id. An RGB image whose three channels are equal is read as grayscale. A 16-bit image with
  one level besides 0 is object 1 at any level; one with several levels none of which is above
  half the range is refused (it would read as an empty mask). Floating-point images are refused.
- RGB with one colour per object: black (and, for RGBA, alpha < 128) is background. If every other
  colour is a DAVIS palette colour, its palette index is the id, so an RGB rendering of a DAVIS mask
  keeps its ids. Otherwise the colours are numbered 1..N in the order they first appear in raster
  order (top row first, left to right).
- More than MAX_OBJECTS distinct objects is refused: such a file is a compressed or anti-aliased
  image, not a mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from seggpt_video.errors import UserError
from seggpt_video.io.atomic import atomic_path

MAX_OBJECTS = 64


def _bit_twiddling_palette() -> np.ndarray:
    """The PASCAL VOC / DAVIS colour map: bits of the index spread over the high bits of R, G, B."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        code, red, green, blue = index, 0, 0, 0
        for bit in range(7, -1, -1):
            red |= (code & 1) << bit
            green |= ((code >> 1) & 1) << bit
            blue |= ((code >> 2) & 1) << bit
            code >>= 3
        palette[index] = (red, green, blue)
    return palette


DAVIS_PALETTE: np.ndarray = _bit_twiddling_palette()
"""(256, 3) uint8 RGB: the colour of each object id; index 1 = (128, 0, 0), 2 = (0, 128, 0)."""
DAVIS_PALETTE.setflags(write=False)

_PALETTE_INDEX = {
    (int(r) << 16) | (int(g) << 8) | int(b): index for index, (r, g, b) in enumerate(DAVIS_PALETTE)
}


def read_mask(
    path: Path | str, size: tuple[int, int] | None = None, resize: bool = False
) -> np.ndarray:
    """Read a mask file as object ids (rules in the module docstring).

    size: (height, width) the mask must have, e.g. the video's frame shape; None = any size.
    resize: with a different size, resize with nearest neighbour instead of raising UserError.
    Returns (H, W) uint8 object ids, 0 = background.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: a folder, not a mask file")
    try:
        with Image.open(path) as image:
            image.load()
    except FileNotFoundError:
        raise UserError(f"{path}: no such mask file") from None
    except UnidentifiedImageError:
        raise UserError(
            f"{path}: cannot read the mask as an image ({_what_instead(path)})"
        ) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        reason = str(error).strip() or type(error).__name__
        raise UserError(
            f"{path}: cannot read the mask as an image (truncated?): {reason}"
        ) from None

    labels = _labels_from_image(image, path)
    if size is not None and labels.shape != tuple(size):
        height, width = size
        if not resize:
            raise UserError(
                f"{path}: the mask is {labels.shape[1]}x{labels.shape[0]} but the video is "
                f"{width}x{height} (width x height); use --resize-mask to resize the mask "
                "(nearest neighbour)"
            )
        labels = np.asarray(Image.fromarray(labels).resize((width, height), Image.NEAREST))
    return labels


def _what_instead(path: Path) -> str:
    """What a file that no image decoder recognised is, for the one-line error."""
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError as error:
        return str(error.strerror)
    if not head:
        return "an empty file"
    if head.startswith(b"\x89PNG"):
        return "a damaged or truncated PNG"
    if b"\0" not in head:
        try:
            head.decode("utf-8")
            return "a text file"
        except UnicodeDecodeError:
            pass
    return "not an image format it knows; save masks as PNG"


def _labels_from_image(image: Image.Image, path: Path) -> np.ndarray:
    if image.mode == "P":
        return _checked(np.asarray(image, dtype=np.uint8), path, "palette indices")
    if image.mode == "1":
        return np.asarray(image, dtype=np.uint8)
    if image.mode == "F":
        raise UserError(
            f"{path}: a floating-point image; save the mask as an 8-bit PNG (palette, 0/255 gray "
            "or one colour per object)"
        )
    if image.mode in ("L", "LA", "I", "I;16", "I;16B", "I;16L"):
        gray = np.asarray(image.getchannel(0) if image.mode == "LA" else image)
        return _labels_from_gray(gray, path)
    rgba = np.asarray(image.convert("RGBA"))
    rgb = rgba[..., :3].copy()
    rgb[rgba[..., 3] < 128] = 0
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return _labels_from_gray(rgb[..., 0], path)
    return _labels_from_colours(rgb, path)


def _labels_from_gray(gray: np.ndarray, path: Path) -> np.ndarray:
    if gray.min(initial=0) < 0:
        raise UserError(f"{path}: gray levels below 0; this does not look like a mask")
    if gray.max(initial=0) < 128:
        return _checked(gray.astype(np.uint8), path, "gray levels")
    if gray.dtype == np.uint8:
        return (gray > 127).astype(np.uint8)
    # 16 bits (or 32-bit "I"): lossless, so a single level is one object whatever its value
    levels = np.unique(gray)
    if len(levels) == 1 or (len(levels) == 2 and levels[0] == 0):
        return (gray > 0).astype(np.uint8)
    labels = (gray > 32767).astype(np.uint8)
    if not labels.any():
        raise UserError(
            f"{path}: {len(levels)} 16-bit gray levels up to {int(levels[-1])}, none above half "
            "the range: neither a 0/65535 mask nor object ids below 128; save it as an 8-bit PNG"
        )
    return labels


def _labels_from_colours(rgb: np.ndarray, path: Path) -> np.ndarray:
    codes = (
        (rgb[..., 0].astype(np.uint32) << 16)
        | (rgb[..., 1].astype(np.uint32) << 8)
        | rgb[..., 2].astype(np.uint32)
    ).ravel()
    colours, first_seen, inverse = np.unique(codes, return_index=True, return_inverse=True)
    objects = [int(code) for code in colours if code != 0]
    if len(objects) > MAX_OBJECTS:
        raise UserError(
            f"{path}: {len(objects)} distinct colours, more than the {MAX_OBJECTS} objects a mask "
            "may hold; is it JPEG-compressed or anti-aliased? Save it as PNG with one flat colour "
            "per object on black"
        )
    ids = np.zeros(len(colours), dtype=np.uint8)
    if all(code in _PALETTE_INDEX for code in objects):
        for slot, code in enumerate(colours):
            ids[slot] = _PALETTE_INDEX[int(code)]
    else:
        order = [slot for slot in np.argsort(first_seen, kind="stable") if colours[slot] != 0]
        for number, slot in enumerate(order, start=1):
            ids[slot] = number
    return ids[inverse].reshape(rgb.shape[:2])


def _checked(labels: np.ndarray, path: Path, what: str) -> np.ndarray:
    count = len(object_ids(labels))
    if count > MAX_OBJECTS:
        raise UserError(
            f"{path}: {count} distinct {what}, more than the {MAX_OBJECTS} objects a mask "
            "may hold; this does not look like a mask"
        )
    return labels


def object_ids(labels: np.ndarray) -> list[int]:
    """The object ids present in an object-id map, ascending, background excluded.

    labels: (H, W) uint8 object ids.
    """
    present = np.bincount(labels.ravel(), minlength=256)
    return [int(i) for i in np.flatnonzero(present[1:]) + 1]


def require_objects(labels: np.ndarray, path: Path | str) -> list[int]:
    """The object ids of a prompt mask, or UserError naming the file if the mask is empty.

    labels: (H, W) uint8 object ids.
    """
    ids = object_ids(labels)
    if not ids:
        raise UserError(f"{path}: the mask is empty (every pixel is background)")
    return ids


def write_palette_png(path: Path | str, labels: np.ndarray) -> None:
    """Write an object-id map as a DAVIS palette PNG, atomically.

    labels: (H, W) uint8 object ids; pixel value = palette index.
    """
    if labels.dtype != np.uint8 or labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D uint8 array, got {labels.dtype} {labels.shape}")
    image = Image.fromarray(labels)
    image.putpalette(DAVIS_PALETTE.tobytes())  # turns the "L" image into "P" with these indices
    with atomic_path(path) as partial:
        image.save(partial, format="PNG")
