"""Object colours: how object ids become the colours SegGPT paints, and back.

One object is painted white on black, as the release does. Several objects get colours from a
fixed list chosen to be far apart in RGB (corners of the colour cube first), and a prediction is
decoded by the nearest colour, black meaning background.

Decoding at frame size can also go through soft scores (:func:`object_scores`): refined along the
frame's edges (``refine.py``), the ids are their argmax (:func:`decide`), and the soft mattes of
``--soft`` come from them (:func:`soft_alpha`). The ids at the model's size, which the prompt
memory keeps, are always the hard decoding of the painting as it came out of the model.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from seggpt_video.refine import RefineSettings, refine_scores

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


def upsample_passes(
    painted: list[torch.Tensor], size: tuple[int, int], mode: str = "bilinear"
) -> list[torch.Tensor]:
    """Each pass's painting (B, 3, S, S) at frame size (B, 3, H, W)."""
    return [upsample(p, size, mode) for p in painted]


def _nearest(
    painted: list[torch.Tensor], palettes: list[ObjectPalette], present: list[int]
) -> torch.Tensor:
    """Hard ids (B, H, W) of passes painted at any size: the nearest colour of a palette of
    several objects, else the whitest of the white-on-black passes above 128."""
    if len(palettes) == 1 and len(palettes[0].object_ids) > 1:
        return palettes[0].decode(painted[0], present)
    ids = torch.tensor([p.object_ids[0] for p in palettes], dtype=torch.uint8)
    scores = torch.stack([p.mean(dim=1) for p in painted])
    labels = ids.to(scores.device)[scores.argmax(dim=0)]
    labels[scores.max(dim=0).values <= 128] = 0
    return labels


# --- soft scores, refinement and soft mattes -----------------------------------------------------


@dataclass
class ObjectScores:
    """Each object's soft score at frame size, and what the background's is.

    scores: (B, K, H, W) float in [0, 1], one channel per object of ``object_ids`` (all the
    run's objects, increasing; 0 for an object not annotated yet). exclusive: True when the
    objects and the background share one unit, the background's score being 1 - their sum (one
    pass of several colours); False when each score is its own object's against that object's
    background (white-on-black passes: one object, or one pass per object).
    """

    scores: torch.Tensor
    exclusive: bool
    object_ids: list[int]

    def probabilities(self) -> torch.Tensor:
        """Background and objects as shares of one, (B, 1 + K, H, W) float, channel 0 the
        background. Exclusive scores keep their shares; own scores s_k become odds s/(1 - s)
        against the background's 1 (one object: exactly 1 - s and s), so the argmax is the
        highest score above 0.5, as the white-on-black decoding has it."""
        channels = list(self.scores.unbind(dim=1))
        if self.exclusive:
            background = functools.reduce(torch.add, channels).neg_().add_(1.0).clamp_(min=0.0)
        else:
            channels = [s.clamp(max=1.0 - 1e-6) for s in channels]
            channels = [s / (1.0 - s) for s in channels]
            background = torch.ones_like(channels[0])
        shares = torch.stack([background, *channels], dim=1)
        total = functools.reduce(torch.add, [background, *channels])
        return shares.div_(total.unsqueeze(1))


@dataclass
class DecodedBatch:
    """A batch's object ids at frame and model size, and its soft mattes when asked for.

    labels: (B, H, W) uint8 ids at frame size (the output); model_labels: (B, S, S) uint8 at
    the model's input size (what the prompt memory keeps, never refined); alpha: (B, 1 + K, H,
    W) uint8 soft mattes (see :func:`soft_alpha`) or None.
    """

    labels: torch.Tensor
    model_labels: torch.Tensor
    alpha: torch.Tensor | None = None


def object_scores(
    painted: list[torch.Tensor],
    palettes: list[ObjectPalette],
    present: list[int],
    object_ids: list[int],
) -> ObjectScores:
    """Soft scores of passes already at frame size, (B, 3, H, W) float RGB in [0, 255] each.

    White on black (one object, or one pass per object): the mean RGB / 255. Several colours
    in one pass: from the squared distances d_k to the background's and the present objects'
    colours, r_k = max(0, 1 - (d_k - d_nearest) / D), D the closest pair's squared distance,
    shared out as r_k / sum(r): the nearest colour scores highest (so the argmax is the
    nearest-colour decoding), a pure colour scores 1 and a pixel halfway between two colours
    0.5 each. Objects not present score 0.
    """
    batch, _, height, width = painted[0].shape
    scores = painted[0].new_zeros(batch, len(object_ids), height, width)
    if not (len(palettes) == 1 and len(palettes[0].object_ids) > 1):
        for palette, one in zip(palettes, painted, strict=True):
            column = object_ids.index(palette.object_ids[0])
            scores[:, column] = one.mean(dim=1).div_(255).clamp_(0, 1)
        return ObjectScores(scores, False, object_ids)
    palette = palettes[0]
    chosen = [i for i in palette.object_ids if i in present]
    colours = [(0.0, 0.0, 0.0)]
    colours += [tuple(map(float, palette.colours[palette.object_ids.index(i)])) for i in chosen]
    spread = min(
        sum((a - b) ** 2 for a, b in zip(first, second, strict=True))
        for first, second in itertools.combinations(colours, 2)
    )
    # Per colour, elementwise: reductions across a few channels of a large NCHW tensor (min,
    # argmax, einsum) ran several times slower than these loops on the CPU (1080p).
    red, green, blue = painted[0].unbind(dim=1)
    distance = [
        (red * (-2 * r) + r * r).add_(green * (-2 * g) + g * g).add_(blue * (-2 * b) + b * b)
        for r, g, b in colours
    ]
    nearest = functools.reduce(torch.minimum, distance)
    nearness = [(nearest - d).div_(spread).add_(1.0).clamp_(min=0.0) for d in distance]
    total = functools.reduce(torch.add, nearness)
    for object_id, share in zip(chosen, nearness[1:], strict=True):
        scores[:, object_ids.index(object_id)] = share / total
    return ObjectScores(scores, True, object_ids)


def decide(probabilities: torch.Tensor, object_ids: list[int]) -> torch.Tensor:
    """Ids (B, H, W) uint8: the argmax over background and objects (a tie goes to the first,
    the background before any object), from (B, 1 + K, H, W) shares."""
    table = torch.tensor([0, *object_ids], dtype=torch.uint8, device=probabilities.device)
    return table[_channel_argmax(probabilities)]


def _channel_argmax(values: torch.Tensor) -> torch.Tensor:
    """argmax over dim 1 of (B, C, H, W), the first of equals winning: (B, H, W) int64. A
    loop over the channels: torch's argmax across dim 1 took 0.24 s for 2 channels at 1080p."""
    best = values[:, 0].clone()
    index = torch.zeros_like(best, dtype=torch.int64)
    for channel in range(1, values.shape[1]):
        better = values[:, channel] > best
        best = torch.where(better, values[:, channel], best)
        index.masked_fill_(better, channel)
    return index


MATTE_LEVELS = 0.1
"""Soft mattes: shares below this are transparent, above 1 - this opaque (see soft_alpha)."""


def soft_alpha(
    probabilities: torch.Tensor, labels: torch.Tensor, object_ids: list[int]
) -> torch.Tensor:
    """Soft mattes (B, 1 + K, H, W) uint8 0-255 from shares (B, 1 + K, H, W) and ids (B, H, W).

    Channel 0: the union of the objects, m / (m + p_0) with m the strongest object's share and
    p_0 the background's (one object: its score). Channel k: object_ids[k - 1], p_k / (p_k +
    its strongest rival's share, background or object), so two touching objects share their
    border and a lone object's matte against the background is its score. Each is above 127
    exactly where ``labels`` has the union or the object (rounding and ties pinned to it).
    Levels: a matte below MATTE_LEVELS is 0 and above 1 - MATTE_LEVELS is 255, linear between
    (symmetric about 0.5, so the threshold stays): the model's paint is never pure, and without
    this the background held faint alpha everywhere and the inside stopped short of opaque.
    """
    background, objects = probabilities[:, 0], probabilities[:, 1:]
    # The strongest object's share and the runner-up's, and which object is the strongest.
    first, second = objects[:, 0].clone(), torch.zeros_like(background)
    strongest = torch.zeros_like(background, dtype=torch.int64)
    for column in range(1, objects.shape[1]):
        share = objects[:, column]
        better = share > first
        second = torch.where(better, first, torch.maximum(second, share))
        first = torch.where(better, share, first)
        strongest.masked_fill_(better, column)
    mattes = [first / (first + background).clamp_(min=1e-12)]
    for column in range(objects.shape[1]):
        share = objects[:, column]
        rival = torch.maximum(torch.where(strongest == column, second, first), background)
        mattes.append(share / (share + rival).clamp_(min=1e-12))
    inside = [labels != 0, *(labels == object_id for object_id in object_ids)]
    alpha = torch.empty(
        labels.shape[0], len(mattes), *labels.shape[1:], dtype=torch.uint8, device=labels.device
    )
    for channel, (matte, within) in enumerate(zip(mattes, inside, strict=True)):
        level = matte.sub_(MATTE_LEVELS).div_(1 - 2 * MATTE_LEVELS).clamp_(0, 1)
        level = level.mul_(255).round_()
        alpha[:, channel] = torch.where(within, level.clamp(min=128), level.clamp(max=127))
    return alpha


def hard_alpha(labels: np.ndarray, object_ids: list[int]) -> np.ndarray:
    """The mattes of hard ids (H, W) uint8: (1 + K, H, W) uint8, 255 inside the union (channel
    0) and inside each object (channel k: object_ids[k - 1]), 0 elsewhere."""
    inside = [labels != 0, *(labels == i for i in object_ids)]
    return np.stack(inside).astype(np.uint8) * 255


def decode_batch(
    painted: list[torch.Tensor],
    palettes: list[ObjectPalette],
    present: list[int],
    object_ids: list[int],
    size: tuple[int, int],
    *,
    mode: str = "bilinear",
    refine: RefineSettings | None = None,
    guide: torch.Tensor | None = None,
    soft: bool = False,
) -> DecodedBatch:
    """A batch's ids at frame and model size, refined and with soft mattes when asked.

    painted: one (B, 3, S, S) float RGB in [0, 255] per pass, painted with the matching palette.
    present: objects annotated so far (others are never decoded). object_ids: every object of
    the run, increasing (the mattes' channels). size: the frame's (H, W); mode: how the painting
    is upsampled to it. The ids at model size (B, S, S) are the painting's own, decoded before
    any resizing as the release binarises, and become the next prompts. refine: guided-filter
    the soft scores with ``guide``, (B, 3, H, W) uint8 RGB frames, then decide the ids by
    :func:`decide`; None: the upsampled painting decoded directly (one pass of several objects
    by the nearest colour, passes of one object each by the whitest above 128). soft: also
    return :func:`soft_alpha`.
    """
    model_labels = _nearest(painted, palettes, present)
    full = upsample_passes(painted, size, mode)
    if refine is None and not soft:
        return DecodedBatch(_nearest(full, palettes, present), model_labels)
    scores = object_scores(full, palettes, present, object_ids)
    if refine is not None:
        if guide is None:
            raise ValueError("refining needs the frames as the guide")
        model_size = painted[0].shape[-1]
        scores.scores = refine_scores(scores.scores, guide, refine, model_size)
    probabilities = scores.probabilities()
    if refine is not None:
        labels = decide(probabilities, object_ids)
    else:
        labels = _nearest(full, palettes, present)
    alpha = soft_alpha(probabilities, labels, object_ids) if soft else None
    return DecodedBatch(labels, model_labels, alpha)
