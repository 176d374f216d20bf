"""In-context coloring: the loss, the schedule, checkpoints, resuming, the log, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from seggpt_video.cli.app import app
from seggpt_video.errors import UserError
from seggpt_video.model import build_model, load_checkpoint
from seggpt_video.training.coloring import (
    CHECKPOINT,
    FINAL,
    LOG,
    TrainConfig,
    build_sources,
    coloring_step,
    learning_rate,
    masked_patch_loss,
    next_batch,
    schedule_progress,
    train,
)
from seggpt_video.training.pairs import SyntheticPairs, make_group_batch
from seggpt_video.training.tuning import export_weights


def test_loss_is_smooth_l1_over_masked_patches_only():
    torch.manual_seed(0)
    target = torch.randn(2, 3, 16, 8)
    prediction = target.clone()
    masked = torch.zeros(2, 8, dtype=torch.bool)  # 4x2 patches of 4x4 pixels
    masked[0, 0] = True  # top-left patch of the first item
    prediction[0, :, :4, :4] += 1.0  # |error| 1 >> beta: smooth L1 is 1 - beta / 2
    prediction[1] += 5.0  # errors outside masked patches do not count
    loss = masked_patch_loss(prediction, target, masked, patch=4)
    assert loss.item() == pytest.approx(1 - 0.01 / 2, rel=1e-3)
    small = target.clone()
    small[0, :, :4, :4] += 0.005  # |error| < beta: quadratic, 0.5 * e^2 / beta
    assert masked_patch_loss(small, target, masked, 4).item() == pytest.approx(
        0.5 * 0.005**2 / 0.01, rel=1e-2
    )


def test_schedule_warms_up_then_decays_by_steps_or_by_time():
    config = TrainConfig(steps=100, warmup=10, lr=1e-3, min_lr=1e-5)
    assert learning_rate(config, 0, 0.0) == pytest.approx(1e-4)
    assert learning_rate(config, 10, schedule_progress(config, 10, 0)) == pytest.approx(
        1e-3, rel=0.03
    )
    assert learning_rate(config, 100, 1.0) == pytest.approx(1e-5)
    timed = TrainConfig(steps=10_000, minutes=1.0)
    assert schedule_progress(timed, 5, 30.0) == pytest.approx(0.5)


def test_train_writes_log_checkpoint_weights_and_resumes(tmp_path):
    config = TrainConfig(preset="test-small", steps=4, batch_size=2, warmup=1, seed=3)
    final = train(config, tmp_path, log_every=1, progress=False)
    records = [json.loads(line) for line in (tmp_path / LOG).read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(r["loss"] > 0 for r in records)
    assert final == tmp_path / FINAL
    model = load_checkpoint(final)
    assert model.config.name == "test-small"
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert state["step"] == 4
    # A longer run in the same folder resumes from step 4, not from scratch.
    config_more = TrainConfig(preset="test-small", steps=4, batch_size=2, warmup=1, seed=3)
    assert train(config_more, tmp_path, progress=False) == final  # already done: no-op
    with pytest.raises(UserError, match="different settings"):
        train(TrainConfig(preset="test-small", steps=6, seed=4), tmp_path, progress=False)


def test_interrupted_run_resumes_with_the_same_batches(tmp_path):
    config = TrainConfig(preset="test-small", steps=3, batch_size=2, warmup=1, seed=1)
    train(config, tmp_path / "straight", log_every=1, progress=False)
    # Stop after every step (max_minutes=0 stops once a step is done), then resume twice.
    resumed = tmp_path / "resumed"
    assert train(config, resumed, log_every=1, max_minutes=0, progress=False) is None
    assert train(config, resumed, log_every=1, max_minutes=0, progress=False) is None
    assert train(config, resumed, log_every=1, progress=False) == resumed / FINAL
    straight = [json.loads(x)["loss"] for x in (tmp_path / "straight" / LOG).open()]
    again = [json.loads(x)["loss"] for x in (resumed / LOG).open()]
    assert again == pytest.approx(straight, rel=1e-4)


def test_export_weights_halves_the_file_and_loads_back_as_fp32(tmp_path):
    config = TrainConfig(preset="test-small", steps=1, batch_size=1, warmup=1)
    final = train(config, tmp_path, progress=False)
    for source in (final, tmp_path / CHECKPOINT):
        target = tmp_path / "half.safetensors"
        export_weights(source, target)
        assert target.stat().st_size < 0.6 * final.stat().st_size
        model, original = load_checkpoint(target), load_checkpoint(final)
        weight = model.patch_embed.proj.weight
        assert weight.dtype == torch.float32
        torch.testing.assert_close(weight, original.patch_embed.proj.weight, atol=1e-3, rtol=1e-3)


def test_train_cli_runs_and_names_a_missing_davis_folder(tmp_path):
    runner = CliRunner()
    args = ["train", "-o", str(tmp_path / "run"), "--preset", "test-small", "--steps", "2"]
    result = runner.invoke(app, [*args, "--batch-size", "1", "--warmup", "1", "--no-bf16"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / FINAL).exists()
    result = runner.invoke(app, [*args, "--davis", str(tmp_path / "nowhere")])
    assert isinstance(result.exception, UserError)
    assert "nowhere" in str(result.exception)


def test_warm_start_points_half_the_heads_at_the_partner_position():
    from seggpt_video.model import build_model
    from seggpt_video.training.coloring import warm_start_attention

    model = build_model("test-small")  # grid 8 x 4, 2 heads
    warm_start_attention(model)
    attn = model.blocks[0].attn
    rows, cols = model.config.grid
    heads, dim = model.config.num_heads, model.config.head_dim
    # Queries of featureless tokens are the query bias alone: (1, heads, L, head_dim).
    q = attn.qkv.bias[: heads * dim].view(1, heads, 1, dim).expand(1, heads, rows * cols, dim)
    bias = attn.position_bias(q.detach(), rows, cols)[0]  # (heads, L, L)
    query_token = (rows // 2 + 1) * cols + 2  # row 1 of the query half, column 2
    partner = 1 * cols + 2  # row 1 of the prompt half, same column
    assert bias[0, query_token].argmax().item() == partner
    assert bias[0, partner].argmax().item() == query_token
    assert bias[1].abs().max() < 1e-6  # the other head starts as the release initialises it


def test_second_phase_starts_from_the_given_weights(tmp_path):
    first = train(
        TrainConfig(preset="test-small", steps=1, batch_size=1, warmup=1), tmp_path / "one"
    )
    config = TrainConfig(preset="test-small", steps=1, batch_size=1, warmup=1, lr=0.0, min_lr=0.0)
    config.init = str(first)
    second = train(config, tmp_path / "two", progress=False)
    # With a zero learning rate the second phase keeps the first phase's weights exactly.
    torch.testing.assert_close(
        load_checkpoint(second).state_dict(), load_checkpoint(first).state_dict()
    )


def test_ensemble_step_trains_the_release_feature_ensemble_forward():
    torch.manual_seed(0)
    model = build_model("test-small")
    grid = model.config.grid
    batch = make_group_batch([SyntheticPairs(32)], [1.0], 3, 3, grid, np.random.default_rng(1))
    loss = coloring_step(model, batch, bf16=False)
    # One query with three prompts: the release's forward with feature_ensemble=True.
    painted = model(batch.imgs, batch.tgts, batch.bool_masked_pos, batch.seg_type, True)
    expected = masked_patch_loss(painted[:1], batch.tgts[:1], batch.bool_masked_pos[:1], 8)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert all(p.grad is not None for p in model.blocks[0].parameters())


def test_train_mixes_ensemble_steps_in(tmp_path):
    config = TrainConfig(
        preset="test-small",
        steps=4,
        batch_size=4,
        warmup=1,
        ensemble_prompts=3,
        ensemble_share=0.5,
    )
    sources, weights = build_sources(config, 32)
    kinds = [
        next_batch(config, sources, weights, (8, 4), np.random.default_rng([0, step])).prompts
        for step in range(20)
    ]
    assert 1 in kinds and set(kinds) - {1} and set(kinds) <= {1, 2, 3}
    plain = TrainConfig(preset="test-small", batch_size=4)
    assert {
        next_batch(plain, sources, weights, (8, 4), np.random.default_rng(s)).prompts
        for s in range(10)
    } == {1}
    assert train(config, tmp_path, log_every=1, progress=False) == tmp_path / FINAL
