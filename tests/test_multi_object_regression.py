"""Issue 24: the packaged model must keep a second object annotated on a later frame.

The user's case: `run clip --mask 0:a.png --mask 10:b.png` on a two-object synthetic clip, with
the defaults of `run` (fp32, memory 2 for seggpt-tiny, refine guided). IoU over the frames after
frame 10, per object, on 48x64 clips of 20 frames (tests/synthetic_media.moving_shapes), seeds 0
and 5, measured on 2 cores (AMD EPYC, avx2 avx512_bf16 avx512f), torch 2.13:

    engine and weights                                      seed 0 (a, b)   seed 5 (a, b)
    packaged weights, frames before b kept as prompts       1.00, 0.00      1.00, 0.00
    before the fine-tune (4bbb651), the same, memory 2      0.99, 0.89      1.00, 0.77
    packaged weights, frames before b retired (engine)      1.00, 0.98      1.00, 0.98

The loss was the engine's: after frame 10 the prompts were frame 0 and the recent predictions,
all painting b as background, against one frame that shows it. An annotation that brings a new
object now retires the frames before it (seggpt_video/engine.py, _Pass.remember_annotated).
BOUND is issue 24's target for both objects; the old engine fails it on b.
"""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_media import moving_shapes

import seggpt_video
from seggpt_video.evaluation.metrics import region_similarity

FRAMES, HEIGHT, WIDTH, LATE = 20, 48, 64, 10
SEEDS = (0, 5)
BOUND = 0.9


def late_annotation_ious(segmenter: seggpt_video.VideoSegmenter, seed: int) -> tuple[float, ...]:
    """Mean IoU of object a (annotated on frame 0) and of object b (annotated on frame LATE only)
    over the frames after LATE."""
    frames, labels = moving_shapes(FRAMES, HEIGHT, WIDTH, num_objects=2, seed=seed)
    a = np.where(labels[0] == 1, 1, 0).astype(np.uint8)
    b = np.where(labels[LATE] == 2, 2, 0).astype(np.uint8)
    predicted = np.stack([f.labels for f in segmenter.segment(list(frames), masks={0: a, LATE: b})])
    after = slice(LATE + 1, None)
    return tuple(
        float(region_similarity(labels[after] == k, predicted[after] == k).mean()) for k in (1, 2)
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_packaged_model_keeps_an_object_annotated_on_a_later_frame(seed):
    segmenter = seggpt_video.load(model="seggpt-tiny", device="cpu", dtype="fp32")
    first, late = late_annotation_ious(segmenter, seed)
    assert first > BOUND, f"object a, annotated on frame 0: IoU {first:.3f} after frame {LATE}"
    assert late > BOUND, f"object b, annotated on frame {LATE}: IoU {late:.3f} after it"
