"""J, F and their statistics: values worked out by hand, and agreement with vos-benchmark."""

from __future__ import annotations

import math

import numpy as np
import pytest

from seggpt_video.evaluation.metrics import (
    DiskRows,
    boundary_f_measure,
    boundary_map,
    boundary_radius,
    disk,
    frame_j_and_f,
    region_similarity,
    statistics,
)


def mask(shape, *boxes):
    """A bool mask with the given (top, bottom, left, right) half-open boxes set."""
    m = np.zeros(shape, dtype=bool)
    for top, bottom, left, right in boxes:
        m[top:bottom, left:right] = True
    return m


# 10x10 images: tolerance ceil(0.008 * sqrt(200)) = 1 pixel, the disk is a plus sign.
SMALL = (10, 10)


def test_radius_of_davis_frames_and_small_images():
    assert boundary_radius(480, 854) == 8  # 0.008 * 979.6 = 7.84
    assert boundary_radius(240, 427) == 4  # 0.008 * 489.8 = 3.92
    assert boundary_radius(10, 10) == 1
    assert boundary_radius(100, 100) == 2  # 0.008 * 141.4 = 1.13
    assert boundary_radius(480, 854, bound_th=3) == 3


def test_disk_is_the_euclidean_ball():
    assert disk(1).astype(int).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    assert disk(2).sum(axis=1).tolist() == [1, 3, 5, 3, 1]
    skimage_morphology = pytest.importorskip("skimage.morphology")
    for radius in range(12):
        assert np.array_equal(disk(radius), skimage_morphology.disk(radius).astype(bool))


def test_jaccard_by_hand():
    gt = mask(SMALL, (2, 4, 2, 4))  # 4 pixels
    pred = mask(SMALL, (2, 4, 2, 5))  # 6 pixels, 4 shared
    assert region_similarity(gt, pred) == pytest.approx(4 / 6)
    empty = np.zeros(SMALL, dtype=bool)
    assert region_similarity(gt, empty) == 0.0
    assert region_similarity(empty, pred) == 0.0
    assert region_similarity(empty, empty) == 1.0


def test_boundary_of_one_pixel_is_a_two_by_two_block_up_and_left():
    seg = mask(SMALL, (5, 6, 5, 6))
    expected = mask(SMALL, (4, 6, 4, 6))
    assert np.array_equal(boundary_map(seg), expected)


def test_boundary_of_masks_touching_the_border():
    # A mask over the whole frame has no boundary at all (the last row and column only
    # compare along the border), so the bottom and right edges never count.
    assert not boundary_map(np.ones(SMALL, dtype=bool)).any()
    right_half = mask(SMALL, (0, 10, 5, 10))
    assert np.array_equal(boundary_map(right_half), mask(SMALL, (0, 10, 4, 5)))
    bottom_half = mask(SMALL, (5, 10, 0, 10))
    assert np.array_equal(boundary_map(bottom_half), mask(SMALL, (4, 5, 0, 10)))


def test_f_measure_empty_cases():
    gt = mask(SMALL, (2, 5, 2, 5))
    empty = np.zeros(SMALL, dtype=bool)
    assert boundary_f_measure(empty, empty) == 1.0
    assert boundary_f_measure(gt, empty) == 0.0  # precision 1, recall 0
    assert boundary_f_measure(empty, gt) == 0.0  # precision 0, recall 1
    # The whole frame has no boundary, so against an empty prediction F is 1 while J is 0.
    full = np.ones(SMALL, dtype=bool)
    assert boundary_f_measure(full, empty) == 1.0
    assert region_similarity(full, empty) == 0.0


def test_f_measure_one_pixel_objects():
    gt = mask(SMALL, (5, 6, 5, 6))
    assert boundary_f_measure(gt, gt) == 1.0
    # Two columns right: the blocks are cols 4-5 and 6-7; col 6 is 1 pixel from col 5, so
    # half of each boundary matches: precision = recall = 1/2.
    assert boundary_f_measure(gt, mask(SMALL, (5, 6, 7, 8))) == pytest.approx(0.5)
    assert boundary_f_measure(gt, mask(SMALL, (5, 6, 8, 9))) == 0.0


def test_f_measure_uses_the_disk_not_a_square():
    # 100x100: radius 2, disk rows reach |dx| <= 2, 1, 0 for |dy| = 0, 1, 2.
    shape = (100, 100)
    gt = mask(shape, (50, 51, 50, 51))  # boundary rows 49-50, cols 49-50
    pred = mask(shape, (52, 53, 51, 52))  # boundary rows 51-52, cols 50-51
    # Predicted (52, 51) is 2 down and 1 right of the nearest ground truth: outside the disk
    # (4 + 1 > 4); the other three are inside. Same for ground truth (49, 49). F = 3/4.
    assert boundary_f_measure(gt, pred) == pytest.approx(0.75)


def test_f_measure_masks_touching_the_border():
    gt = mask(SMALL, (0, 10, 5, 10))  # boundary: column 4
    assert boundary_f_measure(gt, mask(SMALL, (0, 10, 6, 10))) == 1.0  # column 5, 1 away
    assert boundary_f_measure(gt, mask(SMALL, (0, 10, 7, 10))) == 0.0  # column 6, 2 away
    assert region_similarity(gt, mask(SMALL, (0, 10, 6, 10))) == pytest.approx(0.8)


def test_stacks_give_the_per_frame_values():
    gt = np.stack([mask(SMALL, (5, 6, 5, 6))] * 3)
    pred = np.stack([mask(SMALL, (5, 6, 5, 6)), mask(SMALL, (5, 6, 7, 8)), np.zeros(SMALL, bool)])
    assert boundary_f_measure(gt, pred).tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert region_similarity(gt, pred).tolist() == [1.0, 0.0, 0.0]


def test_statistics_by_hand():
    # Bins of 4 frames: edges [0, 1, 2, 2, 3]; first bin frames 0-1, last bin frames 2-3.
    stats = statistics(np.array([1.0, 0.4, 0.6, 0.2]))
    assert stats.mean == pytest.approx(0.55)
    assert stats.recall == pytest.approx(0.5)
    assert stats.decay == pytest.approx(0.7 - 0.4)
    assert statistics(np.array([0.5, 0.5])).recall == 0.0  # strictly above 0.5
    stats = statistics(np.array([1.0, np.nan, 0.0]))
    assert stats.mean == pytest.approx(0.5)
    assert math.isnan(statistics(np.array([])).mean)


def test_statistics_decay_bins_wrap_past_256_frames_as_the_official_code():
    # Bin edges for 300 frames are [0, 75, 150, 224, 299]; stored as uint8 the last is 43,
    # so the last bin is empty and the decay is NaN, as the official evaluation reports.
    assert math.isnan(statistics(np.linspace(1, 0, 300)).decay)
    assert statistics(np.linspace(1, 0, 200)).decay > 0.5


def _random_pairs(rng):
    """Random noise, rectangles, sparse dots and blobs touching borders, in odd sizes."""
    for trial in range(120):
        h, w = (int(v) for v in rng.integers(1, 48, 2))
        kind = trial % 4
        if kind == 0:
            yield rng.random((h, w)) < rng.random(), rng.random((h, w)) < rng.random()
        elif kind == 1:
            boxes = []
            for _ in range(2):
                top, left = rng.integers(0, h), rng.integers(0, w)
                boxes.append(mask((h, w), (top, top + rng.integers(0, h), left, left + w)))
            yield boxes[0], boxes[1]
        elif kind == 2:
            yield rng.random((h, w)) < 0.03, rng.random((h, w)) < 0.03
        else:
            yy, xx = np.mgrid[:h, :w]
            cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(1, 20)
            gt = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
            yield gt, np.roll(gt, int(rng.integers(-3, 4)), axis=int(rng.integers(0, 2)))


def test_same_as_vos_benchmark_on_random_and_structured_masks():
    evaluator_module = pytest.importorskip("vos_benchmark.evaluator")
    rng = np.random.default_rng(7)
    compared = 0
    for gt, pred in _random_pairs(rng):
        evaluator = evaluator_module.Evaluator()
        evaluator.feed_frame(pred.astype(np.uint8), gt.astype(np.uint8))
        if 1 not in evaluator.object_iou:
            continue  # vos-benchmark only scores objects present in one of the two masks
        assert region_similarity(gt, pred) == evaluator.object_iou[1][0]
        assert boundary_f_measure(gt, pred) == evaluator.boundary_f[1][0]
        compared += 1
    assert compared > 100


def test_same_as_vos_benchmark_at_davis_size():
    evaluator_module = pytest.importorskip("vos_benchmark.evaluator")
    yy, xx = np.mgrid[:480, :854]
    gt = ((yy - 240) / 150) ** 2 + ((xx - 400) / 260) ** 2 <= 1
    pred = ((yy - 236) / 140) ** 2 + ((xx - 412) / 270) ** 2 <= 1
    pred[300:310, 100:700] ^= True  # a stripe through and beyond the object
    evaluator = evaluator_module.Evaluator()
    evaluator.feed_frame(pred.astype(np.uint8), gt.astype(np.uint8))
    assert region_similarity(gt, pred) == evaluator.object_iou[1][0]
    assert boundary_f_measure(gt, pred) == evaluator.boundary_f[1][0]
    assert 0.3 < boundary_f_measure(gt, pred) < 0.99


# The straightforward full-frame measures, written as the DAVIS code does them (seg2bmap over
# the whole frame, the boundary dilated by the disk, matches counted), as the oracle for the
# box-cropped, sparse implementation.


def reference_boundary(seg):
    """DAVIS seg2bmap on the whole frame."""
    east, south, south_east = (np.zeros_like(seg) for _ in range(3))
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    boundary = seg ^ east | seg ^ south | seg ^ south_east
    boundary[-1, :] = seg[-1, :] ^ east[-1, :]
    boundary[:, -1] = seg[:, -1] ^ south[:, -1]
    boundary[-1, -1] = False
    return boundary


def reference_dilate(seg, radius):
    """Binary dilation by disk(radius): OR of the frame shifted by every offset of the disk."""
    height, width = seg.shape
    out = np.zeros_like(seg)
    for dy, dx in np.argwhere(disk(radius)) - radius:
        if abs(dy) >= height or abs(dx) >= width:
            continue  # moved out of the frame
        out[max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] |= seg[
            max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
        ]
    return out


def reference_j_and_f(gt, pred, bound_th=0.008):
    union = np.count_nonzero(gt | pred)
    j = 1.0 if union == 0 else np.count_nonzero(gt & pred) / union
    radius = boundary_radius(*gt.shape, bound_th=bound_th)
    gt_boundary, pred_boundary = reference_boundary(gt), reference_boundary(pred)
    n_gt, n_pred = np.count_nonzero(gt_boundary), np.count_nonzero(pred_boundary)
    if n_pred == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_pred > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_pred == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = np.count_nonzero(pred_boundary & reference_dilate(gt_boundary, radius)) / n_pred
        recall = np.count_nonzero(gt_boundary & reference_dilate(pred_boundary, radius)) / n_gt
    f = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return j, f


def _edge_cases():
    """Empty, full, one-pixel, border-touching, thin and at-the-tolerance masks, named."""
    shape = (40, 50)  # radius ceil(0.008 * 64.03) = 1
    h, w = shape
    empty, full = np.zeros(shape, bool), np.ones(shape, bool)
    yield "empty vs empty", empty, empty, 0.008
    yield "full vs full", full, full, 0.008
    yield "full vs empty", full, empty, 0.008
    yield "empty vs full", empty, full, 0.008
    for y, x in [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (20, 25)]:
        one = mask(shape, (y, y + 1, x, x + 1))
        yield f"one pixel at {y},{x} vs itself", one, one, 0.008
        yield f"one pixel at {y},{x} vs empty", one, empty, 0.008
        yield f"one pixel at {y},{x} vs full", one, full, 0.008
        for th in (0.008, 3, 5):
            moved = mask(shape, (y, y + 1, (x + 3) % w, (x + 3) % w + 1))
            yield f"one pixel at {y},{x} and 3 right, {th}", one, moved, th
    yield "left half vs right half", mask(shape, (0, h, 0, 25)), mask(shape, (0, h, 25, w)), 0.008
    yield "bottom rows vs top rows", mask(shape, (30, h, 0, w)), mask(shape, (0, 10, 0, w)), 2
    yield "frame minus a border", full, mask(shape, (1, h - 1, 1, w - 1)), 0.008
    yield "one row vs one column", mask(shape, (h - 1, h, 0, w)), mask(shape, (0, h, w - 1, w)), 3
    # Boundaries exactly at the tolerance and one pixel beyond it, straight and diagonal.
    for th in (4, 5):
        yield (
            f"4 apart, tolerance {th}",
            mask(shape, (10, 30, 5, 20)),
            mask(shape, (10, 30, 9, 24)),
            th,
        )
        yield (
            f"3 and 4 diagonal, tolerance {th}",
            mask(shape, (5, 6, 5, 6)),
            mask(shape, (8, 9, 9, 10)),
            th,
        )
    # A tolerance wider than the frame.
    yield "tolerance beyond the frame", mask((3, 4), (0, 1, 0, 1)), mask((3, 4), (2, 3, 3, 4)), 9
    for size in [(1, 1), (1, 7), (7, 1), (2, 2)]:
        rng = np.random.default_rng(sum(size))
        yield f"tiny {size}", rng.random(size) < 0.5, rng.random(size) < 0.5, 0.008
        yield f"tiny {size} full vs empty", np.ones(size, bool), np.zeros(size, bool), 0.008


@pytest.mark.parametrize("case", list(_edge_cases()), ids=lambda case: case[0])
def test_edge_cases_same_as_the_full_frame_reference(case):
    _, gt, pred, bound_th = case
    expected = reference_j_and_f(gt, pred, bound_th)
    disk_rows = DiskRows(boundary_radius(*gt.shape, bound_th=bound_th))
    assert frame_j_and_f(gt, pred, disk_rows) == expected
    assert boundary_f_measure(gt, pred, bound_th) == expected[1]
    assert region_similarity(gt, pred) == expected[0]


def test_random_masks_same_as_the_full_frame_reference():
    rng = np.random.default_rng(16)
    compared = 0
    for trial in range(400):
        shape = tuple(int(v) for v in rng.integers(1, 60, 2))
        bound_th = [0.008, 0.05, 0.1, 1, 2, 6][trial % 6]
        gt, pred = next(_random_pairs(rng)) if trial % 2 else _blobs(rng, shape)
        expected = reference_j_and_f(gt, pred, bound_th)
        disk_rows = DiskRows(boundary_radius(*gt.shape, bound_th=bound_th))
        assert frame_j_and_f(gt, pred, disk_rows) == expected, (trial, shape, bound_th)
        compared += 0 < expected[1] < 1
    assert compared > 200  # most cases match only part of the boundaries


def _blobs(rng, shape):
    """A few discs and boxes, some cut by the frame's edges, and a shifted, eroded copy."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    gt = np.zeros(shape, bool)
    for _ in range(int(rng.integers(0, 4))):
        cy, cx = rng.integers(-5, h + 5), rng.integers(-5, w + 5)
        if rng.random() < 0.5:
            gt |= (yy - cy) ** 2 + (xx - cx) ** 2 <= rng.integers(0, 15) ** 2
        else:
            gt |= (abs(yy - cy) <= rng.integers(0, 10)) & (abs(xx - cx) <= rng.integers(0, 10))
    pred = np.roll(gt, tuple(int(v) for v in rng.integers(-4, 5, 2)), axis=(0, 1))
    pred &= rng.random(shape) < 0.97
    return gt, pred


def test_stacks_at_davis_size_same_as_the_full_frame_reference():
    # 854x480: radius 8. Objects in the middle, cut by each edge and corner, and one frame
    # with both masks empty, so the boxes take every position relative to the frame.
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:480, :854]
    centres = [(240, 427), (0, 427), (479, 427), (240, 0), (240, 853), (0, 0), (479, 853)]
    gts, preds = [], []
    for cy, cx in centres:
        gts.append(((yy - cy) / 60) ** 2 + ((xx - cx) / 90) ** 2 <= 1)
        pred = ((yy - cy - rng.integers(-9, 10)) / 57) ** 2 + ((xx - cx) / 95) ** 2 <= 1
        pred[cy // 2 : cy // 2 + 3, :] ^= True  # a stripe through and beyond the object
        preds.append(pred)
    gts.append(np.zeros((480, 854), bool))
    preds.append(np.zeros((480, 854), bool))
    gt, pred = np.stack(gts), np.stack(preds)
    expected = [reference_j_and_f(g, p) for g, p in zip(gt, pred, strict=True)]
    assert boundary_f_measure(gt, pred).tolist() == [f for _, f in expected]
    assert region_similarity(gt, pred).tolist() == [j for j, _ in expected]
    assert all(0.05 < f < 0.9 for _, f in expected[:-1])  # partly matched boundaries
