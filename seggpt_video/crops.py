"""Object-centric crops: a small object is segmented on a window around it and pasted back.

At the packaged model's 64x64 input an object of 1% of a 427x240 frame is a few pixels wide and
vanishes; on a window around it, resized to the model's input, it is several times larger. A
small object gets a pass of its own (white on black) whose prompts are windows too, around the
object in its annotated frames and in its recent predictions, so prompts and query show it at
one scale. The query's window is placed around the object's box in the frame before.

Windows are squares inside the frame: twice the object's longer side, at least the
model's input size in frame pixels (never enlarging the frame's pixels on a large model), at
most the frame's shorter side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CROP_MODES = ("auto", "on", "off")
CROP_BELOW = 0.06
"""auto: objects covering less than this share of the frame where they are annotated get a crop
pass (chosen with WINDOW_PER_OBJECT on DAVIS 2016 train data, docs/multi-object.md)."""
WINDOW_PER_OBJECT = 2.0
"""A window's side over its object's longer side: room for the object to move a frame (1.5 lost
a fast ball on train data; 3 and 4 showed small objects smaller)."""
RESTS_ABOVE = 0.12
"""A crop pass sits out a frame when its object covered more than this share of the frame
before: grown large, the full pass sees it well. On train data 12 % scored as never resting
(held-out J&F, composites, synthetic) and 6 % lower on all three (docs/multi-object.md)."""
CLAIM_BELOW = 0.2
"""A crop whose object the full pass lost, and which finds less than this share of it on
background, takes it from the full pass's other objects (see paste; 0.5 and 0.2 were measured
on train data, docs/multi-object.md)."""


@dataclass(frozen=True)
class Window:
    """A square of a frame: rows top..top+side, columns left..left+side."""

    top: int
    left: int
    side: int

    def crop(self, array: np.ndarray) -> np.ndarray:
        """The window of an (H, W, ...) array, as a view."""
        return array[self.top : self.top + self.side, self.left : self.left + self.side]


def object_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right) of a boolean mask's pixels, bottom/right exclusive; None if
    empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def window_around(
    box: tuple[int, int, int, int], frame_shape: tuple[int, int], model_size: int
) -> Window:
    """The window of an object's box in a frame of (H, W): centred on it, moved inside the
    frame."""
    height, width = frame_shape
    top, left, bottom, right = box
    shortest = min(height, width)
    longest_side = max(bottom - top, right - left)
    side = int(round(WINDOW_PER_OBJECT * longest_side))
    side = min(max(side, model_size, 1), shortest)
    centre_row, centre_col = (top + bottom) / 2, (left + right) / 2
    row = int(round(centre_row - side / 2))
    col = int(round(centre_col - side / 2))
    return Window(min(max(row, 0), height - side), min(max(col, 0), width - side), side)


def is_small(labels: np.ndarray, object_id: int, below: float = CROP_BELOW) -> bool:
    """Whether an object covers less than ``below`` of the frame (and is there at all)."""
    area = np.count_nonzero(labels == object_id)
    return 0 < area < below * labels.size


def rests(share: float) -> bool:
    """Whether a crop pass sits out a frame whose object covered ``share`` of the frame before."""
    return share > RESTS_ABOVE


def paste(
    labels: np.ndarray,
    object_id: int,
    window: Window,
    inside: np.ndarray,
    guarded: frozenset[int] | set[int] = frozenset(),
) -> None:
    """Make the crop pass's mask (side, side) bool the object in ``labels`` (H, W), in place.

    It takes background and the object's own pixels: a crop that spills over a larger
    neighbour must not eat it (on DAVIS train composites it did, and the neighbour was lost).
    But when the full pass found none of the object and less than CLAIM_BELOW of the crop's
    find is background, the full pass has given the object to a neighbour (one that hid
    behind another comes back labelled as that one), and the crop takes all it finds but the
    ``guarded`` objects' pixels (those with crop passes of their own). An empty crop keeps the
    full frame's pixels of the object: it may have left the window, and the full pass still
    looks for it everywhere.
    """
    if not inside.any():
        return
    own = labels == object_id
    found_by_full_pass = bool(own.any())
    labels[own] = 0
    region = window.crop(labels)
    taken = inside & (region == 0)
    if not found_by_full_pass and np.count_nonzero(taken) < CLAIM_BELOW * np.count_nonzero(inside):
        taken = inside & ~np.isin(region, list(guarded))
    region[taken] = object_id
