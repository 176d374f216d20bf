"""Propagation: which prompts each frame gets, batching, annotations, resume, per-object passes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from seggpt_video.engine import Segmenter, SegmenterOptions
from seggpt_video.errors import UserError
from seggpt_video.model import build_model
from seggpt_video.predictor import IMAGENET_MEAN, IMAGENET_STD, SegGPTPredictor

HEIGHT, WIDTH = 40, 56


class SpyPredictor(SegGPTPredictor):
    """Records, for every model call, which frames were the prompts and which the queries.

    Frame t is a flat grey image of level 10 * t, so a prepared image tells its frame back.
    """

    def __init__(self) -> None:
        super().__init__(build_model("test-small"))
        self.calls: list[tuple[list[int], list[int]]] = []

    @staticmethod
    def frame_of(images: torch.Tensor) -> list[int]:
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        levels = ((images.float() * std + mean) * 255).mean(dim=(1, 2, 3))
        return [round(level.item() / 10) for level in levels]

    def paint_each(self, jobs):
        for prompts, queries in jobs:
            self.calls.append((self.frame_of(prompts.images), self.frame_of(queries)))
        return super().paint_each(jobs)


def grey_frames(count: int) -> list[np.ndarray]:
    return [np.full((HEIGHT, WIDTH, 3), 10 * t, dtype=np.uint8) for t in range(count)]


def first_mask() -> np.ndarray:
    labels = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    labels[8:24, 10:30] = 1
    return labels


def run(options: SegmenterOptions, count: int = 8, annotations=None):
    spy = SpyPredictor()
    annotations = annotations or {0: first_mask()}
    results = list(Segmenter(spy, options).propagate(grey_frames(count), annotations))
    assert all(np.array_equal(r.frame, f) for r, f in zip(results, grey_frames(count)))
    return spy.calls, [(r.index, r.labels) for r in results]


def test_memory_zero_uses_only_the_first_frame_like_the_release():
    calls, results = run(SegmenterOptions(memory=0, batch_size=1))
    assert [index for index, _ in results] == list(range(8))
    assert calls == [([0], [t]) for t in range(1, 8)]
    assert np.array_equal(results[0][1], first_mask())  # frame 0 is the annotation itself


@pytest.mark.parametrize("memory", [1, 3])
def test_memory_k_adds_the_k_most_recent_predictions(memory):
    calls, _ = run(SegmenterOptions(memory=memory, batch_size=1))
    expected = [([0, *range(max(1, t - memory), t)], [t]) for t in range(1, 8)]
    assert calls == expected


def test_a_batch_shares_the_memory_as_it_stood_before_it():
    calls, results = run(SegmenterOptions(memory=2, batch_size=3))
    assert [index for index, _ in results] == list(range(8))
    assert calls == [([0], [1, 2, 3]), ([0, 2, 3], [4, 5, 6]), ([0, 5, 6], [7])]


def test_a_later_annotation_splits_batches_and_stays_a_prompt():
    corrected = first_mask()
    corrected[24:30, 10:30] = 1  # object 1 again, grown: no new object
    annotations = {0: first_mask(), 4: corrected}
    calls, results = run(SegmenterOptions(memory=1, batch_size=2), annotations=annotations)
    # Frame 4's own prediction (for objects it does not annotate) comes before it joins.
    assert calls == [
        ([0], [1, 2]),
        ([0, 2], [3]),
        ([0, 3], [4]),
        ([0, 4, 3], [5, 6]),
        ([0, 4, 6], [7]),
    ]
    assert np.array_equal(dict(results)[4], corrected)


def test_an_object_first_annotated_later_retires_the_frames_before_it():
    """Frames 0-3 paint object 2 as background wherever it was: they would outvote frame 4's
    annotation, so frame 4 (object 1 as predicted there, object 2 annotated) starts afresh."""
    annotations = {0: first_mask(), 4: np.where(first_mask() > 0, 2, 0).astype(np.uint8)}
    calls, results = run(SegmenterOptions(memory=1, batch_size=2), annotations=annotations)
    assert calls == [
        ([0], [1, 2]),
        ([0, 2], [3]),
        ([0, 3], [4]),
        ([4], [5, 6]),
        ([4, 6], [7]),
    ]
    labels4 = dict(results)[4]
    assert set(np.unique(labels4)) <= {0, 1, 2}
    assert np.all(labels4[annotations[4] > 0] == 2)  # the annotation wins for its pixels


class EarlierRun:
    """An earlier run's frames: ids at frame size and at model size, with the reads counted."""

    def __init__(self, labels: dict[int, np.ndarray], size: int) -> None:
        self._labels = labels
        self._size = size
        self.model_reads: list[int] = []

    def labels(self, index: int) -> np.ndarray:
        return self._labels[index]

    def model_labels(self, index: int) -> np.ndarray:
        self.model_reads.append(index)
        return np.full((self._size, self._size), index % 2, np.uint8)


def test_recalled_frames_are_not_recomputed_and_only_the_memory_rejoins():
    """Resuming: frames an earlier run kept are read back; the last K rejoin the memory."""
    spy = SpyPredictor()
    earlier = EarlierRun({t: first_mask() for t in range(4)}, spy.size)
    results = list(
        Segmenter(spy, SegmenterOptions(memory=2)).propagate(
            grey_frames(6), {0: first_mask()}, earlier, resume_from=4
        )
    )
    assert [r.index for r in results] == list(range(6))
    assert [r.recalled for r in results] == [True] * 4 + [False] * 2
    assert spy.calls == [([0, 2, 3], [4]), ([0, 3, 4], [5])]
    assert earlier.model_reads == [2, 3]  # only the frames that rejoin the memory are read


@pytest.mark.parametrize(
    "batch_size,first_unfinished,expected",
    [(1, 5, 5), (3, 5, 4), (3, 4, 4), (3, 6, 6), (3, 8, 7), (3, 10, 10), (4, 9, 7), (4, 5, 5)],
)
def test_a_resumed_run_restarts_at_the_start_of_a_batch(batch_size, first_unfinished, expected):
    """Batches, frame 6 annotated: batch 3 [1-3] [4-5] 6 [7-9]; batch 4 [1-4] [5] 6 [7-9]."""
    segmenter = Segmenter(SpyPredictor(), SegmenterOptions(batch_size=batch_size))
    annotations = {0: first_mask(), 6: first_mask()}
    assert segmenter.resume_point(first_unfinished, annotations, 10) == min(expected, 10)


def test_per_object_runs_one_white_on_black_pass_per_object():
    labels = first_mask()
    labels[28:36, 36:50] = 3
    spy = SpyPredictor()
    options = SegmenterOptions(memory=0, per_object=True, crops="off")
    results = list(Segmenter(spy, options).propagate(grey_frames(3), {0: labels}))
    assert len(spy.calls) == 2 * 2  # two objects x two predicted frames
    assert all(set(np.unique(r.labels)) <= {0, 1, 3} for r in results)


def test_prompt_images_are_prepared_like_the_release():
    """PIL's default (bicubic) resize to the model size, /255, ImageNet normalisation."""
    predictor = SegGPTPredictor(build_model("test-small"))
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    size = predictor.size
    resized = np.asarray(Image.fromarray(frame).resize((size, size))) / 255.0
    expected = (resized - IMAGENET_MEAN) / IMAGENET_STD
    ours = predictor.prepare_images([frame])[0].permute(1, 2, 0).numpy()
    # Equal to PIL but for a rare one-level rounding difference (PIL computes in fixed point).
    assert np.abs(ours - expected).max() <= 1.01 / 255 / min(IMAGENET_STD)
    mask = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    mask[5:17, 3:40] = 255
    pil_mask = np.asarray(Image.fromarray(mask).resize((size, size), Image.NEAREST)) / 255.0
    ours_mask = predictor.prepare_masks([mask])[0].permute(1, 2, 0).numpy()
    assert np.allclose(ours_mask, (pil_mask - IMAGENET_MEAN) / IMAGENET_STD, atol=1e-6)


@pytest.mark.parametrize(
    "annotations,message",
    [
        ({}, "no annotated frame"),
        ({0: np.zeros((HEIGHT, WIDTH), np.uint8)}, "empty"),
        ({2: first_mask()}, "frame 0 must be annotated"),
        ({0: first_mask(), 20: first_mask()}, "annotation for frame 20 but the video ends"),
    ],
)
def test_bad_annotations_are_user_errors(annotations, message):
    with pytest.raises(UserError, match=message):
        list(Segmenter(SpyPredictor()).propagate(grey_frames(4), annotations))


def test_spatial_ensemble_tiles_prompts_into_one():
    """The paper's spatial ensemble: an n x n grid of prompts shrunk to one prompt's size."""
    predictor = SegGPTPredictor(build_model("test-small"))
    size = predictor.size
    levels = [40, 90, 140]  # three prompts: a 2 x 2 grid, the fourth cell black
    images = [np.full((size, size, 3), v, np.uint8) for v in levels]
    masks = [np.full((size, size, 3), 255 * (i % 2), np.uint8) for i in range(3)]
    tiled = predictor.prepare_prompts(images, masks).tiled()
    assert tiled.images.shape == (1, 3, size, size)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    pixels = (tiled.images[0] * std + mean) * 255
    masks_px = (tiled.masks[0] * std + mean) * 255
    half, q = size // 2, size // 8
    cells = {(0, 0): 40, (0, 1): 90, (1, 0): 140, (1, 1): 0}
    for (row, col), level in cells.items():
        centre = pixels[
            :, row * half + q : (row + 1) * half - q, col * half + q : (col + 1) * half - q
        ]
        assert torch.allclose(centre, torch.full_like(centre, level), atol=0.5)
    mask_cells = {(0, 0): 0, (0, 1): 255, (1, 0): 0, (1, 1): 0}
    for (row, col), level in mask_cells.items():
        cell = masks_px[:, row * half : (row + 1) * half, col * half : (col + 1) * half]
        assert torch.allclose(cell, torch.full_like(cell, level), atol=1e-3)


def test_spatial_ensemble_gives_the_model_one_prompt():
    calls, _ = run(SegmenterOptions(memory=3, ensemble="spatial"), count=5)
    assert [len(prompts) for prompts, _ in calls] == [1, 1, 1, 1]
