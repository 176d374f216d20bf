"""The DAVIS measures: region similarity J, boundary F-measure F and their statistics.

The numbers match the DAVIS challenge's evaluation code (davis2017-evaluation) exactly;
every function works on a whole stack of frames at once.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

BOUNDARY_THRESHOLD = 0.008
"""Boundary tolerance as a fraction of the image diagonal (DAVIS default)."""

RECALL_THRESHOLD = 0.5
"""A frame counts towards the recall when its score is above this."""


def region_similarity(ground_truth: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """J: intersection over union per frame; 1 where both masks are empty.

    ground_truth, prediction: (T, H, W) or (H, W) bool. Returns (T,) float64 (or a 0-d array).
    """
    _check_same_shape(ground_truth, prediction)
    ground_truth = np.asarray(ground_truth, dtype=bool)
    prediction = np.asarray(prediction, dtype=bool)
    intersection = np.count_nonzero(ground_truth & prediction, axis=(-2, -1))
    union = np.count_nonzero(ground_truth | prediction, axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        jaccard = intersection / union
    return np.where(union == 0, 1.0, jaccard)


def boundary_radius(height: int, width: int, bound_th: float = BOUNDARY_THRESHOLD) -> int:
    """Tolerance in pixels: ``ceil(bound_th * diagonal)``, or ``bound_th`` itself when >= 1."""
    if bound_th >= 1:
        if bound_th != int(bound_th):
            raise ValueError(f"a boundary tolerance in pixels must be whole, got {bound_th}")
        return int(bound_th)
    return int(np.ceil(bound_th * np.linalg.norm((height, width))))


def disk(radius: int) -> np.ndarray:
    """The structuring element DAVIS dilates boundaries with: ``dy**2 + dx**2 <= radius**2``.

    Same as ``skimage.morphology.disk(radius)``. Returns (2r+1, 2r+1) bool.
    """
    offsets = np.arange(-radius, radius + 1)
    return offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2


def boundary_map(masks: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundaries, offset half a pixel towards the origin (DAVIS ``seg2bmap``).

    A pixel is on the boundary when it differs from its east, south or south-east neighbour;
    the last row compares east only, the last column south only, and the bottom-right corner
    never is. masks: (..., H, W) bool. Returns (..., H, W) bool.
    """
    seg = np.asarray(masks, dtype=bool)
    boundary = np.empty_like(seg)
    # Differs from the east neighbour (beyond the last column counts as empty) ...
    np.not_equal(seg[..., :, :-1], seg[..., :, 1:], out=boundary[..., :, :-1])
    boundary[..., :, -1] = seg[..., :, -1]
    # ... or from the south neighbour ...
    boundary[..., :-1, :] |= seg[..., :-1, :] ^ seg[..., 1:, :]
    boundary[..., -1, :] |= seg[..., -1, :]
    # ... or from the south-east one (beyond the edges is covered by the two lines above).
    boundary[..., :-1, :-1] |= seg[..., :-1, :-1] ^ seg[..., 1:, 1:]
    # The last row compares east only, the last column south only.
    np.not_equal(seg[..., -1, :-1], seg[..., -1, 1:], out=boundary[..., -1, :-1])
    np.not_equal(seg[..., :-1, -1], seg[..., 1:, -1], out=boundary[..., :-1, -1])
    boundary[..., -1, -1] = False
    return boundary


def boundary_f_measure(
    ground_truth: np.ndarray, prediction: np.ndarray, bound_th: float = BOUNDARY_THRESHOLD
) -> np.ndarray:
    """F: boundary precision/recall F-measure per frame, matching within a disk tolerance.

    A predicted boundary pixel is a match when a ground-truth boundary pixel lies in the disk
    around it (and vice versa), as the official dilation with ``disk(radius)`` does.
    Both boundaries empty gives 1, exactly one empty gives 0.
    ground_truth, prediction: (T, H, W) or (H, W) bool. Returns (T,) float64 (or 0-d).
    """
    _check_same_shape(ground_truth, prediction)
    single = ground_truth.ndim == 2
    if single:
        ground_truth, prediction = ground_truth[None], prediction[None]
    radius = boundary_radius(*ground_truth.shape[-2:], bound_th=bound_th)
    ground_truth, prediction = _crop_around_masks(
        ground_truth.astype(bool), prediction.astype(bool)
    )
    gt_boundary = boundary_map(ground_truth)
    pred_boundary = boundary_map(prediction)

    n_pred = np.count_nonzero(pred_boundary, axis=(-2, -1))
    n_gt = np.count_nonzero(gt_boundary, axis=(-2, -1))
    pred_matched = _count_within_disk(pred_boundary, gt_boundary, radius)
    gt_matched = _count_within_disk(gt_boundary, pred_boundary, radius)

    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(n_pred == 0, 1.0, pred_matched / n_pred.astype(np.float64))
        recall = np.where(n_gt == 0, 1.0, gt_matched / n_gt.astype(np.float64))
        # One side empty: the official code scores precision 0 / recall 0 for the other side.
        precision = np.where((n_pred > 0) & (n_gt == 0), 0.0, precision)
        recall = np.where((n_gt > 0) & (n_pred == 0), 0.0, recall)
        f_measure = 2 * precision * recall / (precision + recall)
    f_measure = np.where(precision + recall == 0, 0.0, f_measure)
    return f_measure[0] if single else f_measure


class Statistics(NamedTuple):
    """Mean, recall (fraction of frames above 0.5) and decay (first quarter minus last)."""

    mean: float
    recall: float
    decay: float


def statistics(per_frame: np.ndarray) -> Statistics:
    """Mean, recall and decay of one object's per-frame scores, as DAVIS ``db_statistics``.

    per_frame: (T,) float, NaN ignored by mean and decay.
    """
    values = np.asarray(per_frame, dtype=np.float64)
    if values.size == 0:
        return Statistics(math.nan, math.nan, math.nan)
    mean = float(np.nanmean(values))
    recall = float(np.nanmean(values > RECALL_THRESHOLD))
    # Four bins over frames 0..T-1. The official code stores the bin edges as uint8, so for
    # sequences longer than 256 frames they wrap modulo 256; we keep that to give its numbers.
    edges = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(np.int64) % 256
    first = values[edges[0] : edges[1] + 1]
    last = values[edges[3] : edges[4] + 1]
    decay = _nanmean_or_nan(first) - _nanmean_or_nan(last)
    return Statistics(mean, recall, decay)


def _nanmean_or_nan(values: np.ndarray) -> float:
    if values.size == 0 or np.isnan(values).all():
        return math.nan
    return float(np.nanmean(values))


def _check_same_shape(ground_truth: np.ndarray, prediction: np.ndarray) -> None:
    if ground_truth.shape != prediction.shape:
        raise ValueError(
            f"ground truth {ground_truth.shape} and prediction {prediction.shape} differ in shape"
        )


def _crop_around_masks(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop (T, H, W) stacks to where boundaries can be, without changing any boundary map.

    Boundary pixels lie within the masks' box grown by one pixel up and left. One more empty
    row and column below and right (where the image has them) keep the last-row and
    last-column rules of ``boundary_map`` from applying inside the image.
    """
    height, width = a.shape[-2:]
    either = a | b
    rows = np.flatnonzero(either.any(axis=(0, 2)))
    cols = np.flatnonzero(either.any(axis=(0, 1)))
    if rows.size == 0:
        return a[:, :1, :1], b[:, :1, :1]
    box = (
        slice(None),
        slice(max(rows[0] - 1, 0), min(rows[-1] + 2, height)),
        slice(max(cols[0] - 1, 0), min(cols[-1] + 2, width)),
    )
    return a[box], b[box]


def _count_within_disk(targets: np.ndarray, sources: np.ndarray, radius: int) -> np.ndarray:
    """Per frame, how many target pixels have a source pixel within ``disk(radius)``.

    Equal to ``(targets & dilate(sources, disk(radius))).sum()`` but works on the few boundary
    pixels rather than the whole image: row ``dy`` of the disk spans ``|dx| <= half_width[dy]``,
    so a target at (y, x) is covered when row ``y + dy`` has a source pixel in that span. Source
    pixels get sorted keys, one row after another with a gap wider than the disk between rows,
    and each span is one binary search. targets, sources: (T, H, W) bool. Returns (T,) int64.
    """
    n_frames, height, width = targets.shape
    target_index = np.flatnonzero(targets)
    source_index = np.flatnonzero(sources)
    if target_index.size == 0 or source_index.size == 0:
        return np.zeros(n_frames, dtype=np.int64)
    # Flat index (frame * H + y) * W + x becomes (frame * H + y) * row_stride + x.
    row_stride = width + 2 * radius + 2
    source_keys = source_index + (source_index // width) * (row_stride - width)
    target_rows = target_index // width
    target_keys = target_index + target_rows * (row_stride - width)
    y = target_rows % height
    frame = target_rows // height
    half_width = (disk(radius).sum(axis=1) - 1) // 2
    covered = np.zeros(target_index.size, dtype=bool)
    for dy in range(-radius, radius + 1):
        span_start = target_keys + dy * row_stride - half_width[dy + radius]
        first = np.searchsorted(source_keys, span_start)
        found = first < source_keys.size
        nearest = source_keys[np.minimum(first, source_keys.size - 1)]
        found &= nearest <= span_start + 2 * half_width[dy + radius]
        found &= (y + dy >= 0) & (y + dy < height)  # rows outside the image have no sources
        covered |= found
    return np.bincount(frame[covered], minlength=n_frames).astype(np.int64)
