"""Which model runs when none is named: seggpt-vit-large when its weights are on this machine
(Hugging Face cache or $SEGGPT_VIDEO_WEIGHTS), else the packaged one, said in one line.

The "published" weights here are a small random SegGPT saved in the files and layouts the real
ones come in, so that the model loaded can be told apart from the packaged one and compared.
"""

from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from oracle import oracle_from
from synthetic_media import make_video, moving_shapes
from test_checkpoint import NARROW_RELEASE_LAYOUT
from test_model import random_model
from typer.testing import CliRunner

from seggpt_video.cli.app import app
from seggpt_video.engine import DEFAULT_MEMORY, MEMORY_BY_MODEL, default_memory
from seggpt_video.errors import UserError
from seggpt_video.io.masks import write_palette_png
from seggpt_video.model import PRESETS, SegGPT, save_checkpoint
from seggpt_video.model.checkpoint import find_weights
from seggpt_video.predictor import FALLBACK_NOTE, load_predictor

SMALL = PRESETS["test-small"]
REPO_FOLDER = "models--BAAI--seggpt-vit-large"  # the hub cache's folder for BAAI/seggpt-vit-large
REVISION = "4b8a1e1c9d2f3a5b6c7d8e9f0a1b2c3d4e5f6a7b"


def write_hf_folder(folder: Path, seed: int = 0) -> SegGPT:
    """A small SegGPT saved as the hub's files are (config.json, model.safetensors); returned."""
    source = random_model(SMALL, seed)
    oracle_from(source).save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    return source


def fill_hub_cache(cache: Path, seed: int = 0) -> tuple[SegGPT, Path]:
    """What a completed download of BAAI/seggpt-vit-large leaves: refs/main -> a snapshot."""
    repo = cache / REPO_FOLDER
    source = write_hf_folder(repo / "snapshots" / REVISION, seed)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    return source, repo / "snapshots" / REVISION


def same_weights(model: SegGPT, source: SegGPT) -> bool:
    loaded, expected = model.state_dict(), source.state_dict()
    return all(torch.equal(loaded[k].float(), expected[k]) for k in ("pos_embed", "mask_token"))


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache of the test's own, as HF_HUB_CACHE would name it."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_without_published_weights_the_packaged_model_runs_and_says_so(hub_cache: Path, capsys):
    predictor = load_predictor(device="cpu")
    assert predictor.name == predictor.model.config.name == "seggpt-tiny"
    stderr = capsys.readouterr().err
    assert stderr.splitlines() == [FALLBACK_NOTE]
    assert "seggpt-tiny" in stderr and "seggpt-video download seggpt-vit-large" in stderr
    # Named, the packaged model needs no note.
    assert load_predictor(model="seggpt-tiny", device="cpu").name == "seggpt-tiny"
    assert capsys.readouterr().err == ""


def test_published_weights_in_the_hub_cache_become_the_default(hub_cache: Path, capsys):
    source, snapshot = fill_hub_cache(hub_cache)
    assert find_weights("seggpt-vit-large") == snapshot
    capsys.readouterr()  # transformers' saving bar
    predictor = load_predictor(device="cpu")
    assert predictor.name == "seggpt-vit-large"
    assert predictor.model.config.embed_dim == SMALL.embed_dim  # not seggpt-tiny's 64
    assert same_weights(predictor.model, source)
    assert capsys.readouterr().err == ""
    # The packaged model is still there by name.
    assert load_predictor(model="seggpt-tiny", device="cpu").model.config.name == "seggpt-tiny"


@pytest.mark.parametrize("layout", ["safetensors", "hf-folder", "release-pth"])
def test_published_weights_in_the_weights_folder_become_the_default(
    layout: str, tmp_path: Path, hub_cache: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    folder = tmp_path / "weights"
    folder.mkdir()
    if layout == "safetensors":
        source = random_model(SMALL, seed=3)
        save_checkpoint(source, folder / "seggpt-vit-large.safetensors")
    elif layout == "hf-folder":  # what `download --to` leaves
        source = write_hf_folder(folder / "seggpt-vit-large", seed=3)
    else:  # the authors' file: depth 24, its config read from the tensor shapes
        source = random_model(NARROW_RELEASE_LAYOUT, seed=3)
        torch.save({"model": source.state_dict()}, folder / "seggpt_vit_large.pth")
    monkeypatch.setenv("SEGGPT_VIDEO_WEIGHTS", str(folder))
    capsys.readouterr()  # transformers' saving bar
    predictor = load_predictor(device="cpu")
    assert predictor.name == "seggpt-vit-large"
    assert same_weights(predictor.model, source)
    assert capsys.readouterr().err == ""


def test_unfinished_downloads_are_not_taken_for_weights(
    tmp_path: Path, hub_cache: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    # The cache: the config arrived, the weights are still under the hub's temporary name.
    repo = hub_cache / REPO_FOLDER
    snapshot = repo / "snapshots" / REVISION
    write_hf_folder(snapshot)
    (repo / "blobs").mkdir()
    (snapshot / "model.safetensors").rename(repo / "blobs" / "0123abcd.1a2b3c4d.incomplete")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    # The weights folder: `download --to` cut short before the weights were renamed into place.
    folder = tmp_path / "weights"
    (folder / "seggpt-vit-large" / ".cache" / "huggingface").mkdir(parents=True)
    (folder / "seggpt-vit-large" / "config.json").write_text((snapshot / "config.json").read_text())
    monkeypatch.setenv("SEGGPT_VIDEO_WEIGHTS", str(folder))
    assert find_weights("seggpt-vit-large") is None
    capsys.readouterr()  # transformers' saving bar
    assert load_predictor(device="cpu").name == "seggpt-tiny"
    assert capsys.readouterr().err.splitlines() == [FALLBACK_NOTE]


def test_naming_the_published_model_without_its_weights_says_how_to_get_them(hub_cache: Path):
    with pytest.raises(
        UserError, match=r"^seggpt-vit-large: .*`seggpt-video download seggpt-vit-large`"
    ):
        load_predictor(model="seggpt-vit-large", device="cpu")


def test_info_shows_what_the_default_resolves_to(hub_cache: Path):
    runner = CliRunner(env={"COLUMNS": "400"})  # rich's table: one row per line
    before = runner.invoke(app, ["info", "--device", "cpu"])
    assert before.exit_code == 0, before.output
    assert "model seggpt-tiny" in before.stdout
    assert "by default: no local seggpt-vit-large weights" in before.stdout
    assert before.stderr.splitlines() == [FALLBACK_NOTE]
    _, snapshot = fill_hub_cache(hub_cache)
    after = runner.invoke(app, ["info", "--device", "cpu"])
    assert after.exit_code == 0, after.output
    assert "model seggpt-vit-large" in after.stdout
    assert "by default: seggpt-vit-large weights are on this machine" in after.stdout
    assert str(snapshot) in after.stdout
    assert after.stderr == ""


def test_run_without_a_model_segments_with_the_cached_published_weights(
    tmp_path: Path, hub_cache: Path
):
    """Through the command line: the model run.json records is the one chosen."""
    frames, labels = moving_shapes(4, 48, 64, num_objects=2, seed=3)
    video = make_video(tmp_path / "clip.mp4", frames, fps=25)
    write_palette_png(tmp_path / "first.png", labels[0])
    fill_hub_cache(hub_cache)
    out = tmp_path / "out"
    args = ["run", str(video), "--mask", str(tmp_path / "first.png"), "-o", str(out)]
    result = CliRunner().invoke(app, [*args, "--format", "davis", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    settings = [json.loads(p.read_text()) for p in out.rglob("run.json")]
    assert [s["model"] for s in settings] == ["seggpt-vit-large"]
    assert [s["memory"] for s in settings] == [DEFAULT_MEMORY]  # the paper's 8
    assert FALLBACK_NOTE not in result.stderr


@pytest.mark.parametrize(
    ("options", "model", "memory"),
    [
        ([], "seggpt-tiny", 2),  # the packaged model's own default
        (["--memory", "5"], "seggpt-tiny", 5),  # as given
        (["--memory", "0"], "seggpt-tiny", 0),
        (["--model", "seggpt-vit-large"], "seggpt-vit-large", DEFAULT_MEMORY),
    ],
)
def test_the_memory_default_follows_the_model(
    tmp_path: Path, hub_cache: Path, options: list[str], model: str, memory: int
):
    """run.json records the memory used: the model's default when --memory is not given."""
    frames, labels = moving_shapes(4, 48, 64, num_objects=1, seed=3)
    video = make_video(tmp_path / "clip.mp4", frames, fps=25)
    write_palette_png(tmp_path / "first.png", labels[0])
    if model == "seggpt-vit-large":
        fill_hub_cache(hub_cache)
    out = tmp_path / "out"
    args = ["run", str(video), "--mask", str(tmp_path / "first.png"), "-o", str(out), *options]
    result = CliRunner().invoke(app, [*args, "--format", "davis", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    settings = json.loads(next(out.rglob("run.json")).read_text())
    assert (settings["model"], settings["memory"]) == (model, memory)
    assert MEMORY_BY_MODEL == {"seggpt-tiny": 2} and default_memory("elsewhere.pth") == 8
