"""Object-centric crops: window geometry, pasting, when they trigger, and exact resumes."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_media import moving_shapes
from test_engine import HEIGHT, WIDTH, SpyPredictor, first_mask, grey_frames

import seggpt_video
from seggpt_video.crops import Window, is_small, object_box, paste, window_around
from seggpt_video.engine import Segmenter, SegmenterOptions
from seggpt_video.errors import UserError


def test_a_window_is_two_object_sides_centred_and_inside_the_frame():
    assert window_around((100, 200, 110, 220), (240, 427), 64) == Window(73, 178, 64)
    assert window_around((100, 200, 130, 240), (240, 427), 64) == Window(75, 180, 80)
    # At the frame's corner the window moves inside it; never larger than the shorter side.
    assert window_around((0, 0, 5, 5), (240, 427), 64) == Window(0, 0, 64)
    assert window_around((0, 400, 200, 427), (240, 427), 64) == Window(0, 187, 240)
    assert window_around((230, 420, 240, 427), (240, 427), 448) == Window(0, 187, 240)


def test_object_box_and_small_objects():
    labels = np.zeros((40, 50), np.uint8)
    assert object_box(labels == 1) is None
    labels[3:7, 10:12] = 1
    assert object_box(labels == 1) == (3, 10, 7, 12)
    assert is_small(labels, 1) and not is_small(labels, 2)  # 8 px of 2000: small; 2: absent
    labels[:, :] = 1
    assert not is_small(labels, 1)


def test_paste_makes_the_crop_the_object_but_not_a_neighbour_and_an_empty_crop_keeps_it():
    labels = np.zeros((10, 10), np.uint8)
    labels[0, 0] = 2  # the full pass's stray pixel of the object
    labels[5:8, 5:8] = 1
    inside = np.zeros((4, 4), bool)
    inside[0:2, 0:3] = True  # rows 4-5, columns 4-6: over object 1's corner
    paste(labels, 2, Window(4, 4, 4), inside)
    assert labels[0, 0] == 0 and np.count_nonzero(labels == 2) == 4
    # Another object's pixels are not taken.
    assert labels[5, 5] == 1 and labels[4, 5] == 2 and labels[5, 4] == 2
    before = labels.copy()
    paste(labels, 2, Window(0, 0, 4), np.zeros((4, 4), bool))
    assert np.array_equal(labels, before)


def test_a_crop_finding_its_lost_object_inside_a_neighbour_takes_it_back():
    """An object that hid behind another comes back labelled as that one by the full pass
    (synthetic clip 700001): the full pass has none of it, and its crop's find lies on the
    neighbour. The crop takes it, unless the neighbour has a crop pass of its own or the full
    pass still has some of the object."""
    labels = np.zeros((10, 10), np.uint8)
    labels[2:9, 2:9] = 1  # 49 px
    labels[2, 2] = 0  # the find (rows 2-5, columns 2-5) is 1 background pixel of 16
    inside = np.ones((4, 4), bool)
    claimed = labels.copy()
    paste(claimed, 2, Window(2, 2, 4), inside)
    assert np.count_nonzero(claimed == 2) == 16 and np.count_nonzero(claimed == 1) == 48 - 15
    guarded = labels.copy()
    paste(guarded, 2, Window(2, 2, 4), inside, guarded={1})
    assert np.count_nonzero(guarded == 2) == 1 and np.count_nonzero(guarded == 1) == 48
    still_found = labels.copy()
    still_found[9, 9] = 2
    paste(still_found, 2, Window(2, 2, 4), inside)
    assert np.count_nonzero(still_found == 2) == 1 and np.count_nonzero(still_found == 1) == 48


def small_mask() -> np.ndarray:
    labels = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    labels[10:14, 20:25] = 1  # 20 of 2,240 pixels: under 2 %
    return labels


@pytest.mark.parametrize(
    "mask,crops,calls_per_frame",
    [
        (first_mask, "auto", 1),
        (small_mask, "auto", 2),
        (small_mask, "off", 1),
        (first_mask, "on", 2),
    ],
)
def test_crops_add_one_call_per_small_object_and_none_otherwise(mask, crops, calls_per_frame):
    spy = SpyPredictor()
    options = SegmenterOptions(memory=1, crops=crops)
    results = list(Segmenter(spy, options).propagate(grey_frames(5), {0: mask()}))
    assert len(spy.calls) == 4 * calls_per_frame
    if calls_per_frame == 2:
        # The crop pass's query is this frame's window, its first prompt frame 0's (the flat
        # grey frames tell which frame a window is from); predictions join where they hold
        # the object.
        crop_calls = spy.calls[1::2]
        assert [queries for _, queries in crop_calls] == [[1], [2], [3], [4]]
        assert all(
            prompts[0] == 0 and prompts[1:] == sorted(prompts[1:]) for prompts, _ in crop_calls
        )
    assert all(set(np.unique(r.labels)) <= {0, 1} for r in results)


@pytest.mark.parametrize("crops,jobs_for_frame_1", [("auto", 1), ("on", 2)])
def test_a_crop_pass_sits_out_a_frame_after_its_object_grew(monkeypatch, crops, jobs_for_frame_1):
    """Frame 0's object covers 0.9 % of the frame: above a 0.5 % bound, auto's crop pass sits
    out frame 1 (the full pass alone); crops on still runs it."""
    monkeypatch.setattr(seggpt_video.crops, "RESTS_ABOVE", 0.005)
    spy = SpyPredictor()
    options = SegmenterOptions(memory=1, crops=crops)
    list(Segmenter(spy, options).propagate(grey_frames(2), {0: small_mask()}))
    assert [queries for _, queries in spy.calls] == [[1]] * jobs_for_frame_1


def test_crops_on_with_soft_mattes_is_refused():
    with pytest.raises(UserError, match="crops on gives hard masks"):
        Segmenter(SpyPredictor(), SegmenterOptions(crops="on", soft=True))
    with pytest.raises(UserError, match="crops 'sometimes'"):
        Segmenter(SpyPredictor(), SegmenterOptions(crops="sometimes"))


class Kept:
    """The frames of a finished run, as the run folder keeps them."""

    def __init__(self, results) -> None:
        self.frames = {r.index: r for r in results}

    def labels(self, index: int) -> np.ndarray:
        return self.frames[index].labels

    def model_labels(self, index: int) -> np.ndarray:
        return self.frames[index].model_labels


@pytest.mark.parametrize("resume_from", [3, 11, 14])
def test_a_resumed_run_with_crops_equals_an_uninterrupted_one(resume_from):
    """The crop passes' windows and memory are rebuilt from the kept frames: the frames after
    the resume point are the same byte for byte (object 2 annotated late, on frame 10)."""
    frames, labels = moving_shapes(18, 48, 64, num_objects=2, seed=3)
    annotations = {0: np.where(labels[0] == 1, 1, 0).astype(np.uint8)}
    annotations[10] = np.where(labels[10] == 2, 2, 0).astype(np.uint8)
    engine = seggpt_video.load(model="seggpt-tiny", device="cpu", dtype="fp32", crops="on").engine
    whole = list(engine.propagate(list(frames), annotations))
    resumed = list(engine.propagate(list(frames), annotations, Kept(whole), resume_from))
    for first, again in zip(whole[resume_from:], resumed[resume_from:], strict=True):
        assert np.array_equal(first.labels, again.labels), first.index
        assert np.array_equal(first.model_labels, again.model_labels), first.index
