"""Checkpoint formats, strict loading, and resolving model names (packaged, local, hub cache)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from oracle import oracle_forward, oracle_from
from test_model import random_model, release_inputs

from seggpt_video.errors import UserError
from seggpt_video.model import PRESETS, SegGPT, SegGPTConfig, load_checkpoint, save_checkpoint
from seggpt_video.model.checkpoint import infer_config, load_model, resolve_model

SMALL = PRESETS["test-small"]
# Depth 24 with four decoder features: the release's layout, so the config is inferable from shapes.
NARROW_RELEASE_LAYOUT = SegGPTConfig(
    image_size=(64, 32), patch_size=8, embed_dim=16, depth=24, num_heads=2,
    pretrain_image_size=32, decoder_embed_dim=4,
)  # fmt: skip


def outputs(model: SegGPT, config: SegGPTConfig = SMALL) -> torch.Tensor:
    imgs, tgts, bool_masked_pos = release_inputs(config, batch=2)
    with torch.no_grad():
        return model(imgs, tgts, bool_masked_pos, torch.ones(2))


def test_official_pth_round_trip_is_identical(tmp_path: Path):
    source = random_model(SMALL)
    pth = tmp_path / "official.pth"
    torch.save({"model": source.state_dict(), "epoch": 1}, pth)
    saved = tmp_path / "ours.safetensors"
    metadata_free = tmp_path / "raw.pth"
    torch.save(source.state_dict(), metadata_free)
    # A small official checkpoint has no config inside: its depth is not the release's.
    with pytest.raises(UserError, match="raw.pth: cannot infer the model config"):
        load_checkpoint(metadata_free)
    save_checkpoint(source, saved)
    loaded = load_checkpoint(saved)
    assert loaded.config == SMALL
    assert torch.equal(outputs(loaded), outputs(source))
    assert not list(tmp_path.glob("*.tmp"))


def test_safetensors_whose_header_length_starts_with_the_pickle_byte_loads(tmp_path: Path):
    """A header of 0x80 + 256 k bytes starts the file with 0x80, as a legacy pickle does (a
    trained seggpt-tiny's model.safetensors was once refused so)."""
    from safetensors import safe_open

    model = random_model(SMALL)
    path = tmp_path / "model.safetensors"
    for padding in range(0, 2048, 8):
        model.config = replace(SMALL, name="x" * padding)
        save_checkpoint(model, path)
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no metadata length gave a header starting with 0x80")
    with safe_open(str(path), framework="pt") as handle:
        assert "config" in handle.metadata()
    loaded = load_checkpoint(path)
    assert loaded.config == model.config
    torch.testing.assert_close(outputs(loaded), outputs(model), rtol=0, atol=0)


def test_release_layout_config_is_inferred_from_shapes(tmp_path: Path):
    source = random_model(NARROW_RELEASE_LAYOUT)
    assert infer_config(source.state_dict()) == NARROW_RELEASE_LAYOUT
    pth = tmp_path / "seggpt_vit_large.pth"
    torch.save({"model": source.state_dict()}, pth)
    loaded = load_checkpoint(pth)
    assert torch.equal(
        outputs(loaded, NARROW_RELEASE_LAYOUT), outputs(source, NARROW_RELEASE_LAYOUT)
    )


def test_hugging_face_folder_loads_and_matches_the_oracle(tmp_path: Path):
    oracle = oracle_from(random_model(SMALL))
    oracle.save_pretrained(tmp_path / "hf")  # transformers writes model.safetensors + config.json
    model = load_checkpoint(tmp_path / "hf")
    imgs, tgts, bool_masked_pos = release_inputs(SMALL, batch=2)
    expected = oracle_forward(oracle, imgs, tgts, bool_masked_pos, "instance")
    assert (outputs(model) - expected).abs().max().item() < 1e-5
    # The bare .safetensors file next to its config.json loads too.
    single = load_checkpoint(tmp_path / "hf" / "model.safetensors")
    assert torch.equal(outputs(single), outputs(model))


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda sd: sd.pop("blocks.1.attn.rel_pos_w"), "missing blocks.1.attn.rel_pos_w"),
        (lambda sd: sd.update(extra_head=torch.zeros(3)), "unexpected extra_head"),
        (
            lambda sd: sd.update({"blocks.0.mlp.fc1.weight": torch.zeros(5, 32)}),
            r"wrong shape blocks.0.mlp.fc1.weight \(5, 32\) != \(128, 32\)",
        ),
    ],
    ids=["missing", "unexpected", "misshapen"],
)
def test_damaged_checkpoint_is_refused_naming_the_tensor(tmp_path: Path, damage, message):
    model = random_model(SMALL)
    save_checkpoint(model, tmp_path / "good.safetensors")
    from safetensors.torch import load_file, safe_open, save_file

    state = load_file(tmp_path / "good.safetensors")
    with safe_open(tmp_path / "good.safetensors", framework="pt") as handle:
        metadata = handle.metadata()
    damage(state)
    save_file(state, tmp_path / "bad.safetensors", metadata=metadata)
    with pytest.raises(UserError, match=message):
        load_checkpoint(tmp_path / "bad.safetensors")


def test_truncated_and_foreign_files_are_refused(tmp_path: Path):
    save_checkpoint(random_model(SMALL), tmp_path / "full.safetensors")
    data = (tmp_path / "full.safetensors").read_bytes()
    (tmp_path / "half.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="half.safetensors: not a readable checkpoint"):
        load_checkpoint(tmp_path / "half.safetensors")
    torch.save({"model": {"conv.weight": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="other.pth: neither official"):
        load_checkpoint(tmp_path / "other.pth")
    with pytest.raises(UserError, match="nothing.pth: no such checkpoint"):
        load_checkpoint(tmp_path / "nothing.pth")


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.delenv("SEGGPT_VIDEO_WEIGHTS", raising=False)
    return cache


def test_offline_without_a_cached_copy_says_where_to_put_the_file(offline_hub: Path):
    with pytest.raises(
        UserError, match=r"seggpt-vit-large: weights not cached.*SEGGPT_VIDEO_WEIGHTS"
    ):
        resolve_model("seggpt-vit-large")
    with pytest.raises(UserError, match="no-such-model: unknown model name"):
        resolve_model("no-such-model")


def test_offline_with_a_cached_hub_copy_loads_it(offline_hub: Path):
    """The layout huggingface_hub leaves after a completed download (refs/main -> snapshot)."""
    source = random_model(SMALL)
    repo = offline_hub / "models--BAAI--seggpt-vit-large"
    revision = "0" * 40
    oracle_from(source).save_pretrained(repo / "snapshots" / revision)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    # A download that never completed sits beside it under an .incomplete name and is not used.
    (repo / "blobs").mkdir()
    (repo / "blobs" / "deadbeef.incomplete").write_bytes(b"partial")
    model = load_model("seggpt-vit-large")
    assert torch.equal(outputs(model), outputs(source))


def test_weights_folder_from_the_environment(tmp_path: Path, offline_hub: Path, monkeypatch):
    source = random_model(NARROW_RELEASE_LAYOUT)
    torch.save({"model": source.state_dict()}, tmp_path / "seggpt_vit_large.pth")
    monkeypatch.setenv("SEGGPT_VIDEO_WEIGHTS", str(tmp_path))
    assert resolve_model("seggpt-vit-large") == tmp_path / "seggpt_vit_large.pth"
    config = json.loads(json.dumps(load_model("seggpt-vit-large").config.to_dict()))
    assert config["depth"] == 24
