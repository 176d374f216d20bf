"""Object colours: how object ids become the colours SegGPT paints, and back.

One object is painted white on black, as the release does. Several objects get colours from a
fixed list chosen to be far apart in RGB (corners of the colour cube first), and a prediction is
decoded by the nearest colour, black meaning background.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# Corners of the RGB cube (pairwise distance >= 255), then mid-edge points (>= 128 from all).
_SEPARATED_COLOURS = np.array(
    [
        (255, 255, 255),
        (255, 0, 0),
        (0, 255, 0),
        (0, 0, 255),
        (255, 255, 0),
        (255, 0, 255),
        (0, 255, 255),
        (128, 0, 0),
        (0, 128, 0),
        (0, 0, 128),
        (255, 128, 0),
        (255, 0, 128),
        (128, 255, 0),
        (0, 255, 128),
        (128, 0, 255),
        (0, 128, 255),
        (255, 255, 128),
        (255, 128, 255),
        (128, 255, 255),
        (128, 128, 255),
    ],
    dtype=np.uint8,
)
MAX_OBJECTS = len(_SEPARATED_COLOURS)


def object_colours(num_objects: int) -> np.ndarray:
    """Colours for objects 1..n: (n, 3) uint8. One object: white, as the release paints it."""
    if num_objects > MAX_OBJECTS:
        raise ValueError(f"at most {MAX_OBJECTS} objects in one pass, got {num_objects}")
    if num_objects == 1:
        return _SEPARATED_COLOURS[:1].copy()
    return _SEPARATED_COLOURS[1 : num_objects + 1].copy()


class ObjectPalette:
    """Maps the user's object ids to paint colours and decodes painted predictions.

    ``object_ids`` are the ids as they appear in the user's masks (e.g. DAVIS palette indices).
    """

    def __init__(self, object_ids: list[int]) -> None:
        self.object_ids = sorted(int(i) for i in object_ids)
        self.colours = object_colours(len(self.object_ids))
        # Lookup table id -> colour; index 0 (background) is black.
        self._id_to_colour = np.zeros((256, 3), dtype=np.uint8)
        for object_id, colour in zip(self.object_ids, self.colours):
            self._id_to_colour[object_id] = colour
        self._labels = torch.tensor([0, *self.object_ids], dtype=torch.uint8)
        self._candidates = torch.cat(
            [torch.zeros(1, 3), torch.from_numpy(self.colours).float()], dim=0
        )

    def paint(self, labels: np.ndarray) -> np.ndarray:
        """Object ids (H, W) uint8 -> colour mask (H, W, 3) uint8; unknown ids paint black."""
        return self._id_to_colour[labels]

    def paint_tensor(self, labels: torch.Tensor) -> torch.Tensor:
        """Object ids (N, H, W) uint8 tensor -> colour masks (N, 3, H, W) float in [0, 255]."""
        table = torch.from_numpy(self._id_to_colour).to(labels.device, torch.float32)
        return table[labels.long()].permute(0, 3, 1, 2)

    def decode(self, painted: torch.Tensor, present: list[int] | None = None) -> torch.Tensor:
        """Nearest-colour decoding: (N, 3, H, W) float RGB in [0, 255] -> (N, H, W) uint8 ids.

        present: the objects that may appear (default all); an object not yet annotated must
        not be read into the painting. One object uses the release's rule (mean RGB > 128).
        """
        if len(self.object_ids) == 1:
            inside = painted.mean(dim=1) > 128
            return inside.to(torch.uint8) * self.object_ids[0]
        keep = [0] + [1 + self.object_ids.index(i) for i in (present or self.object_ids)]
        labels = self._labels[keep].to(painted.device)
        candidates = self._candidates[keep].to(painted.device, painted.dtype)
        # Squared distance to each candidate colour, expanded to avoid a (N, K, 3, H, W) temporary.
        norms = (candidates**2).sum(1)
        dots = torch.einsum("kc,nchw->nkhw", candidates, painted)
        distance = norms[None, :, None, None] - 2 * dots
        nearest = distance.argmin(dim=1)
        return labels[nearest]


def upsample(painted: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Painted prediction (B, 3, S, S) back to frame size (B, 3, H, W), before decoding.

    'bilinear' gives smoother boundaries than 'nearest', the release's choice.
    """
    if mode == "bilinear":
        return F.interpolate(painted, size=size, mode="bilinear", align_corners=False)
    return F.interpolate(painted, size=size, mode="nearest")


def decode_passes(
    painted: list[torch.Tensor],
    palettes: list[ObjectPalette],
    present: list[int],
    size: tuple[int, int],
    mode: str = "bilinear",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Object ids of a batch from its painted passes: at frame size and at model size.

    painted: one (B, 3, S, S) float RGB in [0, 255] per pass, painted with the matching palette.
    present: objects annotated so far (others are never decoded). Returns ids (B, H, W) at the
    frame's size (H, W) and (B, S, S) at the model's: the release binarises at model size, and
    those ids become the next prompts. One pass of several objects is decoded by the nearest
    colour; passes of one object each (white on black) by the whitest above 128.
    """
    if len(palettes) == 1 and len(palettes[0].object_ids) > 1:
        palette = palettes[0]
        return palette.decode(upsample(painted[0], size, mode), present), palette.decode(
            painted[0], present
        )
    ids = torch.tensor([p.object_ids[0] for p in palettes], dtype=torch.uint8)

    def whitest(scores: torch.Tensor) -> torch.Tensor:
        labels = ids.to(scores.device)[scores.argmax(dim=0)]
        labels[scores.max(dim=0).values <= 128] = 0
        return labels

    full = whitest(torch.stack([upsample(p, size, mode).mean(dim=1) for p in painted]))
    return full, whitest(torch.stack([p.mean(dim=1) for p in painted]))
