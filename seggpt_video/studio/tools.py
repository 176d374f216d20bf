"""The drawing tools on an object-id map: GrabCut box, brush, eraser; and the page's overlay.

An edit is a list of operations in video pixels (what the page sends, what a script may send)::

    {"tool": "box", "object": 1, "box": [x0, y0, x1, y1]}            # GrabCut inside the box
    {"tool": "brush", "object": 1, "size": 12, "points": [[x, y], ...]}
    {"tool": "eraser", "size": 12, "points": [[x, y], ...]}          # "object": erase only it

Coordinates may be fractional and are clipped to the frame; size is the stroke's diameter.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from seggpt_video.errors import UserError

GRABCUT_SIDE = 640  # GrabCut runs on a crop scaled to at most this side (about 0.3 s)
GRABCUT_ITERATIONS = 5
GRABCUT_MARGIN = 0.25  # context around the box, as a share of its size (background samples)
MAX_POINTS = 20_000
MAX_SIZE = 500
TOOLS = ("box", "brush", "eraser")


def apply_edit(
    labels: np.ndarray, frame: np.ndarray | None, operations: list, objects: set[int]
) -> np.ndarray:
    """A copy of `labels` (H, W) uint8 ids with `operations` applied, in order.

    frame: (H, W, 3) uint8 RGB, what GrabCut segments (needed only for a box). objects: the ids
    that may be drawn.
    UserError (one line, naming the operation) for a malformed or unknown operation.
    """
    if not isinstance(operations, list) or not operations:
        raise UserError("operations: expected a non-empty list of edits")
    labels = labels.copy()
    for number, op in enumerate(operations):
        where = f"operations[{number}]"
        if not isinstance(op, dict) or op.get("tool") not in TOOLS:
            raise UserError(f"{where}: expected an object with tool one of {', '.join(TOOLS)}")
        tool = op["tool"]
        target = op.get("object")
        if target is not None or tool != "eraser":
            if not _is_int(target) or target not in objects:
                raise UserError(f"{where}: object {target!r} is not an object of the studio")
        if tool == "box":
            box = _box(op.get("box"), labels.shape, where)
            if frame is None:
                raise ValueError("a box needs the frame")
            inside = grabcut(frame, box)
            labels[labels == target] = 0
            labels[inside] = target
        else:
            size = op.get("size")
            if not _is_number(size) or not 1 <= size <= MAX_SIZE:
                raise UserError(f"{where}: size must be a number from 1 to {MAX_SIZE}")
            stroke = stroke_mask(labels.shape, _points(op.get("points"), where), float(size))
            if tool == "brush":
                labels[stroke] = target
            elif target is None:
                labels[stroke] = 0
            else:
                labels[stroke & (labels == target)] = 0
    return labels


def stroke_mask(shape: tuple[int, int], points: np.ndarray, size: float) -> np.ndarray:
    """(H, W) bool: a round-capped line of diameter `size` through `points` (N, 2) x, y."""
    import cv2

    canvas = np.zeros(shape, dtype=np.uint8)
    # cv2 draws on integer pixels; 4 fractional bits keep sub-pixel positions of a scaled view
    shift = 4
    reach = max(shape) + MAX_SIZE  # far outside draws nothing; clipped so int32 cannot overflow
    scaled = np.round(np.clip(points, -reach, reach) * (1 << shift)).astype(np.int64)
    radius = max(0.5, size / 2)
    if len(scaled) == 1 or size <= 1:
        for x, y in scaled:
            cv2.circle(canvas, (int(x), int(y)), int(round(radius * (1 << shift))), 1, -1,
                       cv2.LINE_8, shift)  # fmt: skip
    if len(scaled) > 1:
        cv2.polylines(canvas, [scaled.reshape(-1, 1, 2).astype(np.int32)], False, 1,
                      max(1, int(round(size))), cv2.LINE_8, shift)  # fmt: skip
        for x, y in scaled[[0, -1]]:  # round caps at both ends
            cv2.circle(canvas, (int(x), int(y)), int(round(radius * (1 << shift))), 1, -1,
                       cv2.LINE_8, shift)  # fmt: skip
    return canvas.astype(bool)


def grabcut(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """GrabCut's foreground inside `box` (x0, y0, x1, y1; x1, y1 excluded), (H, W) bool.

    frame: (H, W, 3) uint8 RGB. Runs on a crop around the box (plus a margin of context),
    scaled down to GRABCUT_SIDE, so a box on a 4K frame costs what one on 480p does.
    """
    import cv2

    height, width = frame.shape[:2]
    x0, y0, x1, y1 = box
    margin_x = int((x1 - x0) * GRABCUT_MARGIN) + 8
    margin_y = int((y1 - y0) * GRABCUT_MARGIN) + 8
    cx0, cy0 = max(0, x0 - margin_x), max(0, y0 - margin_y)
    cx1, cy1 = min(width, x1 + margin_x), min(height, y1 + margin_y)
    crop = frame[cy0:cy1, cx0:cx1]
    scale = min(1.0, GRABCUT_SIDE / max(crop.shape[:2]))
    small = crop
    if scale < 1.0:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    rect = (
        int((x0 - cx0) * scale),
        int((y0 - cy0) * scale),
        max(1, int((x1 - x0) * scale)),
        max(1, int((y1 - y0) * scale)),
    )
    mask = np.zeros(small.shape[:2], dtype=np.uint8)
    background = np.zeros((1, 65), dtype=np.float64)
    foreground = np.zeros((1, 65), dtype=np.float64)
    bgr = np.ascontiguousarray(small[..., ::-1])
    try:
        cv2.grabCut(bgr, mask, rect, background, foreground, GRABCUT_ITERATIONS,
                    cv2.GC_INIT_WITH_RECT)  # fmt: skip
    except cv2.error:  # a box too thin to model (a few pixels): take the box itself
        mask[rect[1] : rect[1] + rect[3], rect[0] : rect[0] + rect[2]] = cv2.GC_PR_FGD
    chosen = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    if scale < 1.0:
        chosen = cv2.resize(chosen, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_NEAREST)
    inside = np.zeros((height, width), dtype=bool)
    inside[cy0:cy1, cx0:cx1] = chosen.astype(bool)
    inside[:, :x0] = inside[:, x1:] = False  # GrabCut never adds outside its box
    inside[:y0, :] = inside[y1:, :] = False
    return inside


def render_overlay(labels: np.ndarray, colours: dict[int, str], width: int | None = None) -> bytes:
    """The page's overlay: RGBA PNG, each object's colour (opaque) on transparent.

    labels: (H, W) uint8 ids; colours: id -> "#rrggbb" (ids not listed are grey). width: scale
    down (nearest) to this many pixels wide.
    """
    if width is not None and width < labels.shape[1]:
        height = max(1, round(labels.shape[0] * width / labels.shape[1]))
        labels = np.asarray(Image.fromarray(labels).resize((width, height), Image.NEAREST))
    lut = np.zeros((256, 4), dtype=np.uint8)
    lut[1:] = (128, 128, 128, 255)
    for object_id, colour in colours.items():
        lut[object_id] = (*(int(colour[i : i + 2], 16) for i in (1, 3, 5)), 255)
    buffer = io.BytesIO()
    Image.fromarray(lut[labels], "RGBA").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _box(value: object, shape: tuple[int, int], where: str) -> tuple[int, int, int, int]:
    if not isinstance(value, list) or len(value) != 4 or not all(map(_is_number, value)):
        raise UserError(f"{where}: box must be [x0, y0, x1, y1] in video pixels")
    height, width = shape
    x0, x1 = sorted((value[0], value[2]))
    y0, y1 = sorted((value[1], value[3]))
    x0, x1 = int(np.clip(np.floor(x0), 0, width)), int(np.clip(np.ceil(x1), 0, width))
    y0, y1 = int(np.clip(np.floor(y0), 0, height)), int(np.clip(np.ceil(y1), 0, height))
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise UserError(f"{where}: the box is smaller than 2x2 pixels inside the frame")
    return x0, y0, x1, y1


def _points(value: object, where: str) -> np.ndarray:
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= MAX_POINTS
        or not all(isinstance(p, list) and len(p) == 2 and all(map(_is_number, p)) for p in value)
    ):
        raise UserError(f"{where}: points must be 1 to {MAX_POINTS} [x, y] pairs")
    return np.asarray(value, dtype=np.float64)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
