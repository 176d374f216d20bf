"""J, F and their statistics: values worked out by hand, and agreement with vos-benchmark."""

from __future__ import annotations

import math

import numpy as np
import pytest

from seggpt_video.evaluation.metrics import (
    boundary_f_measure,
    boundary_map,
    boundary_radius,
    disk,
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
