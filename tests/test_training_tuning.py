"""In-context tuning: a frozen model, a learnable prompt, saved and loaded for `run`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seggpt_video.errors import UserError
from seggpt_video.model import build_model
from seggpt_video.objects import ObjectPalette
from seggpt_video.predictor import SegGPTPredictor
from seggpt_video.training.synthetic import make_clip
from seggpt_video.training.tuning import (
    load_tuned_prompt,
    read_tuned_prompt,
    save_tuned_prompt,
    tune_prompt,
)


def _predictor(preset: str = "test-small") -> SegGPTPredictor:
    torch.manual_seed(0)
    return SegGPTPredictor(build_model(preset))


def test_tuning_lowers_the_loss_and_leaves_the_model_unchanged():
    predictor = _predictor()
    before = {k: v.clone() for k, v in predictor.model.state_dict().items()}
    frames, labels = make_clip(11, num_frames=3, height=32, width=32, num_objects=2)
    prompt, losses = tune_prompt(
        predictor, list(frames), list(labels), steps=15, lr=0.05, progress=False
    )
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    for name, tensor in predictor.model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert prompt.images.shape == prompt.masks.shape == (1, 3, 32, 32)
    assert prompt.object_ids == [1, 2]


def test_initial_prompt_mask_has_the_engine_colours():
    predictor = _predictor()
    frames, labels = make_clip(12, num_frames=2, height=32, width=32, num_objects=2)
    prompt, _ = tune_prompt(predictor, list(frames), list(labels), steps=1, lr=0.0, progress=False)
    painted = ObjectPalette([1, 2]).paint(labels[0])
    np.testing.assert_allclose(
        prompt.masks, predictor.prepare_masks(painted[None]).cpu(), atol=1e-5
    )


def test_saved_prompt_loads_for_run_and_keeps_its_metadata(tmp_path):
    predictor = _predictor()
    frames, labels = make_clip(13, num_frames=2, height=32, width=32, num_objects=1)
    prompt, _ = tune_prompt(predictor, list(frames), list(labels), steps=2, progress=False)
    path = tmp_path / "prompt.safetensors"
    save_tuned_prompt(prompt, path)
    loaded = load_tuned_prompt(path, predictor)
    torch.testing.assert_close(loaded.images, prompt.images)
    torch.testing.assert_close(loaded.masks, prompt.masks)
    again = read_tuned_prompt(path)
    assert again.object_ids == [1] and again.config["name"] == "test-small"
    assert not list(tmp_path.glob("*.partial"))


def test_prompt_of_another_size_is_a_user_error(tmp_path):
    predictor = _predictor()
    frames, labels = make_clip(14, num_frames=2, height=32, width=32, num_objects=1)
    prompt, _ = tune_prompt(predictor, list(frames), list(labels), steps=1, progress=False)
    path = tmp_path / "prompt.safetensors"
    save_tuned_prompt(prompt, path)
    other = SegGPTPredictor(build_model("seggpt-tiny"))
    with pytest.raises(UserError, match="prompt.safetensors: prompt is 32x32"):
        load_tuned_prompt(path, other)


def test_foreign_or_missing_prompt_files_are_user_errors(tmp_path):
    predictor = _predictor()
    with pytest.raises(UserError, match="no such prompt file"):
        load_tuned_prompt(tmp_path / "missing.safetensors", predictor)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    with pytest.raises(UserError, match="garbage.safetensors"):
        load_tuned_prompt(garbage, predictor)


def test_tuning_without_objects_is_a_user_error():
    frames = [np.zeros((32, 32, 3), np.uint8)]
    with pytest.raises(UserError, match="empty"):
        tune_prompt(_predictor(), frames, [np.zeros((32, 32), np.uint8)], progress=False)
