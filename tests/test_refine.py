"""Edge-aware refinement (refine.py) and the soft scores it works on (objects.py).

The guided filter sharpens a blurred score along the frame's edge; on drawn shapes at 4x the
model's size it keeps them at least as well as the plain upsampling; labels are the argmax of the
refined scores; and without refinement the output is today's, byte for byte: the ids of a frozen
copy of the decoding as it was before refinement existed (``decode_passes_before_refine``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from synthetic_media import moving_shapes

from seggpt_video.engine import Segmenter, SegmenterOptions
from seggpt_video.errors import UserError
from seggpt_video.model import build_model
from seggpt_video.objects import (
    ObjectPalette,
    decode_batch,
    object_scores,
    upsample_passes,
)
from seggpt_video.predictor import SegGPTPredictor, load_predictor
from seggpt_video.refine import (
    DEFAULT_SETTINGS,
    MIN_RADIUS,
    RefineSettings,
    refine_record,
    refine_scores,
)


def decode_passes_before_refine(painted, palettes, present, size, mode="bilinear"):
    """objects.decode_passes as it was at commit b0f01b7, before refinement (the oracle)."""

    def upsample(painted, size, mode="bilinear"):
        if mode == "bilinear":
            return F.interpolate(painted, size=size, mode="bilinear", align_corners=False)
        return F.interpolate(painted, size=size, mode="nearest")

    if len(palettes) == 1 and len(palettes[0].object_ids) > 1:
        palette = palettes[0]
        return palette.decode(upsample(painted[0], size, mode), present), palette.decode(
            painted[0], present
        )
    ids = torch.tensor([p.object_ids[0] for p in palettes], dtype=torch.uint8)

    def whitest(scores):
        labels = ids.to(scores.device)[scores.argmax(dim=0)]
        labels[scores.max(dim=0).values <= 128] = 0
        return labels

    full = whitest(torch.stack([upsample(p, size, mode).mean(dim=1) for p in painted]))
    return full, whitest(torch.stack([p.mean(dim=1) for p in painted]))


def noisy_painting(labels: torch.Tensor, palette: ObjectPalette, seed: int = 0) -> torch.Tensor:
    """Ids (B, S, S) painted in the palette's colours with noise, (B, 3, S, S) in [0, 255]."""
    generator = torch.Generator().manual_seed(seed)
    painted = palette.paint_tensor(labels)
    return (painted + torch.randn(painted.shape, generator=generator) * 40).clamp(0, 255)


def blobs(batch: int, size: int, ids: list[int], seed: int = 0) -> torch.Tensor:
    """(B, S, S) uint8: a disc per object id, at random places."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:size, 0:size]
    labels = np.zeros((batch, size, size), dtype=np.uint8)
    for b in range(batch):
        for object_id in ids:
            cy, cx = rng.uniform(size * 0.2, size * 0.8, 2)
            labels[b][(ys - cy) ** 2 + (xs - cx) ** 2 <= (size / 5) ** 2] = object_id
    return torch.from_numpy(labels)


# --- the filter ---------------------------------------------------------------------------------


@pytest.mark.parametrize("midpoint", [125, 131])
def test_the_filter_sharpens_a_blurred_score_along_a_sharp_image_edge(midpoint):
    """A vertical image edge between columns 127 and 128 of a 256x256 frame, and a score blurred
    across it (a sigmoid ramp about 18 pixels wide from 10 to 90 %, as a 4x upsampling of a soft
    painting gives) whose half-way point is 3 pixels off the edge: refined with a window of 8
    pixels (2 model pixels at 64x64), the score steps at the image's edge."""
    size = 256
    guide = torch.full((1, 3, size, size), 40, dtype=torch.uint8)
    guide[..., 128:] = 200
    x = torch.arange(size, dtype=torch.float32) + 0.5
    blurred = torch.sigmoid((x - midpoint) / 4).expand(1, 1, size, size).contiguous()
    refined = refine_scores(blurred, guide, RefineSettings(radius=2.0, eps=1e-3), model_size=64)
    assert refined.shape == blurred.shape
    before, after = blurred[0, 0], refined[0, 0]
    crossing_before = (before > 0.5).int().argmax(dim=1)
    crossing_after = (after > 0.5).int().argmax(dim=1)
    print(f"first column above 0.5: {crossing_before[0]} blurred, {crossing_after[0]} refined")
    assert (crossing_before == midpoint).all()
    assert (crossing_after == 128).all()  # every row: the image's edge
    jump_before = (before[:, 128] - before[:, 127]).min()
    jump_after = (after[:, 128] - after[:, 127]).min()
    assert jump_after > 4 * jump_before
    # far from the edge the score stays what it was
    assert torch.allclose(after[:, :88], before[:, :88], atol=0.03)
    assert torch.allclose(after[:, 168:], before[:, 168:], atol=0.03)


def test_scores_keep_to_zero_one_and_the_filter_runs_on_any_frame_size():
    guide = torch.randint(0, 256, (2, 3, 7, 5), dtype=torch.uint8)  # smaller than the window
    scores = torch.rand(2, 3, 7, 5)
    refined = refine_scores(scores, guide, DEFAULT_SETTINGS, model_size=64)
    assert refined.shape == scores.shape
    assert refined.min() >= 0 and refined.max() <= 1


def test_radius_and_subsample_follow_the_upsampling_factor():
    settings = RefineSettings(radius=0.5, eps=1e-3)
    assert settings.in_pixels(256, 256, 64) == (2, 1)
    assert settings.in_pixels(1080, 1920, 64) == (8, 4)  # 0.5 * 1080 / 64 = 8.4
    assert settings.in_pixels(480, 854, 448) == (MIN_RADIUS, 1)
    assert RefineSettings(radius=4, subsample=3).in_pixels(240, 427, 64) == (15, 3)
    with pytest.raises(ValueError, match="radius"):
        RefineSettings(radius=0)
    with pytest.raises(ValueError, match="subsample"):
        RefineSettings(subsample=0)


def test_the_settings_record_names_the_filter_only_when_it_filters():
    assert refine_record("none", DEFAULT_SETTINGS) == {"mode": "none"}
    record = refine_record("guided", RefineSettings(1.5, 1e-4, 2))
    assert record == {"mode": "guided", "radius": 1.5, "eps": 1e-4, "subsample": 2}


def test_an_unknown_refine_mode_is_refused():
    with pytest.raises(UserError, match="refine 'bogus'"):
        Segmenter(SegGPTPredictor(build_model("test-small")), SegmenterOptions(refine="bogus"))


# --- scores and labels --------------------------------------------------------------------------


@pytest.mark.parametrize("present", [[1, 2, 5], [2, 5]])
def test_without_refinement_the_argmax_of_the_scores_is_the_nearest_colour(present):
    palette = ObjectPalette([1, 2, 5])
    painted = noisy_painting(blobs(2, 32, [1, 2, 5], seed=1), palette, seed=1)
    full = upsample_passes([painted], (96, 128))
    scores = object_scores(full, [palette], present, palette.object_ids)
    shares = scores.probabilities()
    assert torch.allclose(shares.sum(dim=1), torch.ones(1))
    table = torch.tensor([0, 1, 2, 5], dtype=torch.uint8)
    nearest = palette.decode(full[0], present)
    assert torch.equal(table[shares.argmax(dim=1)], nearest)
    absent = [i for i in palette.object_ids if i not in present]
    for object_id in absent:
        assert scores.scores[:, palette.object_ids.index(object_id)].max() == 0


def test_a_pure_colour_scores_one_and_a_tie_shares_equally():
    palette = ObjectPalette([1, 2])
    red, green = palette.colours.astype(np.float32)
    pixels = np.array([red, green, (red + green) / 2, (0, 0, 0)], dtype=np.float32)
    pixels = torch.from_numpy(pixels.T.copy())
    pixels = pixels.reshape(1, 3, 1, 4)
    scores = object_scores([pixels], [palette], [1, 2], [1, 2]).scores[0, :, 0]
    assert torch.allclose(scores[:, 0], torch.tensor([1.0, 0.0]))
    assert torch.allclose(scores[:, 1], torch.tensor([0.0, 1.0]))
    # halfway between red and green is as far from black as from either: a third each
    assert torch.allclose(scores[:, 2], torch.tensor([1 / 3, 1 / 3]))
    assert torch.allclose(scores[:, 3], torch.zeros(2))


def test_white_on_black_scores_are_the_mean_grey_and_decide_the_whitest_above_half():
    palettes = [ObjectPalette([3]), ObjectPalette([7])]
    painted = [noisy_painting(blobs(1, 32, [3], seed=s), p, seed=s) for s, p in enumerate(palettes)]
    full = upsample_passes(painted, (64, 64))
    scores = object_scores(full, palettes, [3, 7], [3, 7])
    assert torch.allclose(scores.scores[:, 0], (full[0].mean(dim=1) / 255).clamp(0, 1))
    shares = scores.probabilities()
    # one object: exactly 1 - s and s
    one = object_scores(full[:1], palettes[:1], [3], [3]).probabilities()
    assert torch.allclose(one[:, 1], (full[0].mean(dim=1) / 255).clamp(0, 1))
    assert torch.allclose(one[:, 0] + one[:, 1], torch.ones(1))
    expected = decode_batch(painted, palettes, [3, 7], [3, 7], (64, 64)).labels
    decided = torch.tensor([0, 3, 7], dtype=torch.uint8)[shares.argmax(dim=1)]
    # the rule is the whitest above half (128 of 255 today): equal but for a grey in (127.5, 128]
    means = torch.stack([f.mean(dim=1) for f in full])
    edge = ((means > 127.5) & (means <= 128)).any(dim=0)
    assert torch.equal(decided[~edge], expected[~edge])


@pytest.mark.parametrize("per_object", [False, True])
def test_with_refinement_the_labels_are_the_argmax_of_the_refined_scores(per_object):
    ids = [1, 2, 4]
    palettes = [ObjectPalette([i]) for i in ids] if per_object else [ObjectPalette(ids)]
    labels = blobs(2, 32, ids, seed=4)
    painted = [noisy_painting(labels, p, seed=k) for k, p in enumerate(palettes)]
    frames = F.interpolate(palettes[-1].paint_tensor(labels), size=(128, 128), mode="nearest")
    guide = (frames * 0.7 + 30).to(torch.uint8)
    settings = RefineSettings(radius=1.0, eps=1e-3)
    decoded = decode_batch(
        painted, palettes, ids, ids, (128, 128), refine=settings, guide=guide, soft=True
    )
    scores = object_scores(upsample_passes(painted, (128, 128)), palettes, ids, ids)
    refined = refine_scores(scores.scores, guide, settings, model_size=32)
    scores.scores = refined
    expected = torch.tensor([0, *ids], dtype=torch.uint8)[scores.probabilities().argmax(dim=1)]
    assert torch.equal(decoded.labels, expected)
    plain = decode_batch(painted, palettes, ids, ids, (128, 128))
    assert torch.equal(decoded.model_labels, plain.model_labels)  # memory's ids never refined
    assert not torch.equal(decoded.labels, plain.labels)  # the filter did move some pixels


# --- the engine ---------------------------------------------------------------------------------


class PaintingSpy(SegGPTPredictor):
    """Keeps every painting the model gave, in call order."""

    def __init__(self) -> None:
        torch.manual_seed(3)
        super().__init__(build_model("test-small"))
        self.paintings: list[torch.Tensor] = []

    def paint_each(self, jobs):
        painted = super().paint_each(jobs)
        self.paintings.extend(painting.clone() for painting in painted)
        return painted


@pytest.mark.parametrize(
    "num_objects,per_object,batch_size",
    [(1, False, 1), (2, False, 2), (3, True, 1)],
    ids=["one object", "colours, batches of 2", "per object"],
)
def test_refine_none_gives_todays_ids_byte_for_byte(num_objects, per_object, batch_size):
    """Every frame's ids equal those the decoding before refinement gives the same paintings."""
    frames, labels = moving_shapes(7, 40, 56, num_objects=num_objects, seed=2)
    spy = PaintingSpy()
    options = SegmenterOptions(memory=2, batch_size=batch_size, per_object=per_object)
    options.refine = "none"
    results = list(Segmenter(spy, options).propagate(list(frames), {0: labels[0]}))
    assert [r.index for r in results] == list(range(7))
    ids = sorted(int(i) for i in np.unique(labels[0]) if i)
    palettes = [ObjectPalette([i]) for i in ids] if per_object else [ObjectPalette(ids)]
    calls = iter(spy.paintings)
    predicted = results[1:]
    for start in range(0, len(predicted), batch_size):
        batch = predicted[start : start + batch_size]
        painted = [next(calls) for _ in palettes]
        full, model = decode_passes_before_refine(painted, palettes, ids, (40, 56))
        for position, result in enumerate(batch):
            assert result.labels.tobytes() == full[position].numpy().tobytes()
            assert result.model_labels.tobytes() == model[position].numpy().tobytes()
            assert result.alpha is None


def test_refinement_keeps_the_shapes_drawn_at_four_times_the_model_size():
    """Sharp-edged shapes in 256x256 frames, the packaged seggpt-tiny (64x64): the mean IoU
    with the true masks is at least as good refined as plainly upsampled."""
    frames, truth = moving_shapes(12, 256, 256, num_objects=2, seed=5)
    predictor = load_predictor("seggpt-tiny", device="cpu")
    iou = {}
    for mode in ("none", "guided"):
        segmenter = Segmenter(predictor, SegmenterOptions(refine=mode))
        results = list(segmenter.propagate(list(frames), {0: truth[0]}))
        scores = []
        for result in results[1:]:
            for object_id in (1, 2):
                mine, true = result.labels == object_id, truth[result.index] == object_id
                scores.append((mine & true).sum() / max((mine | true).sum(), 1))
        iou[mode] = float(np.mean(scores))
    print(f"mean IoU over 11 frames and 2 objects: none {iou['none']:.4f}, "
          f"guided {iou['guided']:.4f}")  # fmt: skip
    assert iou["none"] > 0.5  # the model does follow the shapes
    assert iou["guided"] >= iou["none"]
