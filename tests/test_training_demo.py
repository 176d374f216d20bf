"""The shipped small model segments unseen synthetic clips; `demo` and `tune` end to end."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from seggpt_video.cli.app import app
from seggpt_video.model import build_model, save_checkpoint
from seggpt_video.model.checkpoint import PACKAGED_WEIGHTS, resolve_model
from seggpt_video.predictor import DEFAULT_MODEL, load_predictor
from seggpt_video.training.demo import (
    copy_first_mask,
    score_clip,
    segment_clip,
    write_synthetic_clip,
)
from seggpt_video.training.tuning import read_tuned_prompt

# Seeds far from any used in training (training batches come from other random streams).
UNSEEN_SEED = 990_001


def test_packaged_model_is_the_default_and_loads_as_fp32():
    path = resolve_model(DEFAULT_MODEL)
    assert path == PACKAGED_WEIGHTS / "seggpt-tiny.safetensors"
    assert path.stat().st_size < 8_000_000
    predictor = load_predictor(device="cpu")
    assert predictor.model.config.name == "seggpt-tiny"
    assert all(p.dtype == torch.float32 for p in predictor.model.parameters())


def test_packaged_model_segments_an_unseen_synthetic_clip(tmp_path):
    # A short clip through the whole path: mp4 + first-frame PNG -> engine -> DAVIS PNGs -> J&F.
    # Measured: 0.93 (README, Training): the 0.8 holds here with room for another CPU's
    # rounding; copying the first mask to every frame scores 0.26.
    clip = write_synthetic_clip(tmp_path, UNSEEN_SEED, num_frames=12, height=64, width=80)
    predictor = load_predictor(device="cpu")
    predictions = segment_clip(clip, predictor, tmp_path, formats=("davis",))
    scores = score_clip(clip, predictions.parent)
    assert scores["J&F-Mean"] >= 0.8, scores
    copied = copy_first_mask(clip, tmp_path / "copied")
    assert scores["J&F-Mean"] > score_clip(clip, copied)["J&F-Mean"] + 0.2


def test_demo_command_writes_the_clip_masks_overlay_and_prints_jf(tmp_path):
    result = CliRunner().invoke(
        app, ["demo", "-o", str(tmp_path), "--seed", "990002", "--frames", "6", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    name = "synthetic-990002"
    for path in (f"{name}.mp4", f"{name}_mask.png", f"{name}_overlay.mp4", f"{name}/00005.png"):
        assert (tmp_path / path).is_file(), path
    assert "J&F-Mean" in result.output


def test_tune_command_writes_a_prompt_for_the_annotated_objects(tmp_path):
    clip = write_synthetic_clip(tmp_path, 990_003, num_frames=4, height=32, width=32)
    torch.manual_seed(0)
    model_path = tmp_path / "small.safetensors"
    save_checkpoint(build_model("test-small"), model_path)
    prompt_path = tmp_path / "prompt.safetensors"
    args = ["tune", str(clip.video), str(clip.ground_truth), "-o", str(prompt_path)]
    result = CliRunner().invoke(
        app, [*args, "--checkpoint", str(model_path), "--steps", "2", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert "tuning on 4 annotated frame(s)" in result.output
    prompt = read_tuned_prompt(prompt_path)
    assert prompt.object_ids == [1, 2] and prompt.images.shape == (1, 3, 32, 32)
