"""`run --soft`: matte, prores and y4m carry soft mattes; masks stay hard; resume keeps them.

A clip of drawn shapes at 96x128, segmented by the packaged seggpt-tiny (64x64): the painted
answer is upsampled 1.5x, so its outlines are soft. The soft mattes hold intermediate values
along the outlines and are above 127 exactly where the DAVIS masks have the object; ffmpeg (the
program, not PyAV) reads them back from the FFV1, ProRes 4444 and Y4M files as written.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import av
import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image
from synthetic_media import ffmpeg_frames, make_video, moving_shapes
from typer.testing import CliRunner

from seggpt_video.cli.app import app
from seggpt_video.errors import UserError
from seggpt_video.io.masks import write_palette_png
from seggpt_video.io.state import STATE_FOLDER
from seggpt_video.objects import MATTE_LEVELS, hard_alpha, soft_alpha
from seggpt_video.refine import DEFAULT_SETTINGS

FRAMES, HEIGHT, WIDTH = 8, 96, 128
OBJECTS = (1, 2)
runner = CliRunner()


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("soft")
    frames, labels = moving_shapes(FRAMES, HEIGHT, WIDTH, num_objects=2, seed=4)
    write_palette_png(folder / "first.png", labels[0])
    return {"video": make_video(folder / "clip.mp4", frames, fps=25), "first": folder / "first.png"}


def run_args(media: dict[str, Path], out: Path, *extra: str) -> list[str]:
    args = ["run", str(media["video"]), "--mask", str(media["first"]), "-m", "seggpt-tiny"]
    args += ["-o", str(out), "--memory", "2", "-f", "davis", "-f", "matte"]
    return [*args, *extra]


def invoke(args: list[str]) -> str:
    result = runner.invoke(app, args)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def masks_and_mattes(out: Path) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The DAVIS ids (T, H, W) and each object's matte PNGs (T, H, W), in frame order."""
    labels = np.stack([read_png(out / "clip" / f"{i:05d}.png") for i in range(FRAMES)])
    mattes = {
        object_id: np.stack(
            [
                read_png(out / "matte" / f"object_{object_id}" / f"{i:05d}.png")
                for i in range(FRAMES)
            ]
        )
        for object_id in OBJECTS
    }
    return labels, mattes


def alpha_plane(path: Path) -> np.ndarray:
    """The alpha of a video with alpha, as 8-bit gray (T, H, W), decoded by ffmpeg."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path)]
    command += ["-vf", "alphaextract", "-f", "rawvideo", "-pix_fmt", "gray", "-"]
    raw = subprocess.run(command, capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, HEIGHT, WIDTH)


@pytest.fixture(scope="module")
def soft_run(media, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("soft-run") / "out"
    invoke(run_args(media, out, "--soft", "-f", "prores", "-f", "y4m"))
    return out


def test_soft_mattes_are_soft_along_outlines_and_half_is_the_hard_mask(soft_run):
    labels, mattes = masks_and_mattes(soft_run)
    for object_id, matte in mattes.items():
        inside = labels == object_id
        assert np.array_equal(matte > 127, inside), object_id
        assert set(np.unique(matte[0])) <= {0, 255}  # the annotated frame is hard
        soft = (matte > 0) & (matte < 255)
        assert soft[1:].sum() > 0, f"object {object_id}: no intermediate value"
        # the intermediate values lie along the object's outline, within the guided filter's
        # window (its radius in frame pixels: the width over which it can move an edge)
        band, _ = DEFAULT_SETTINGS.in_pixels(HEIGHT, WIDTH, 64)
        edge = np.zeros_like(inside)
        edge[:, 1:] |= inside[:, 1:] != inside[:, :-1]
        edge[:, :, 1:] |= inside[:, :, 1:] != inside[:, :, :-1]
        near = edge.copy()
        for _ in range(band):
            near[:, 1:] |= near[:, :-1].copy()
            near[:, :-1] |= near[:, 1:].copy()
            near[:, :, 1:] |= near[:, :, :-1].copy()
            near[:, :, :-1] |= near[:, :, 1:].copy()
        assert (soft & near).sum() >= 0.95 * soft.sum()
        print(f"object {object_id}: {soft.sum()} soft pixels over {FRAMES - 1} predicted frames")


def test_ffmpeg_reads_the_soft_mattes_as_written(soft_run):
    labels, mattes = masks_and_mattes(soft_run)
    for object_id, matte in mattes.items():
        ffv1 = ffmpeg_frames(soft_run / "matte" / f"object_{object_id}.mkv", WIDTH, HEIGHT, "gray")
        assert np.array_equal(ffv1, matte)  # FFV1 is lossless
        prores = alpha_plane(soft_run / "matte" / f"object_{object_id}.mov")
        assert prores.shape == matte.shape
        difference = np.abs(prores.astype(int) - matte.astype(int))
        assert difference.max() <= 1, f"ProRes 4444 alpha (10-bit) off by {difference.max()}"
    # two objects: the Y4M stream carries their union, soft too, above each object's matte
    union = ffmpeg_frames(soft_run / "clip.y4m", WIDTH, HEIGHT, "gray")
    assert np.array_equal(union > 127, labels != 0)
    assert ((union > 0) & (union < 255))[1:].sum() > 0
    for matte in mattes.values():
        assert (union >= matte).all()


def test_without_soft_the_mattes_stay_hard(media, soft_run, tmp_path):
    out = tmp_path / "out"
    invoke(run_args(media, out))
    labels, mattes = masks_and_mattes(out)
    soft_labels, _ = masks_and_mattes(soft_run)
    assert np.array_equal(labels, soft_labels)  # --soft changes mattes only, never masks
    for object_id, matte in mattes.items():
        assert np.array_equal(matte, (labels == object_id).astype(np.uint8) * 255)
    assert json.loads((out / "run.json").read_text())["soft"] is False
    assert not (out / STATE_FOLDER / "clip" / "alpha").exists()


def outputs(out: Path) -> dict[str, object]:
    """Every output and kept file but the timings, by path; ProRes by the alpha it holds."""
    files: dict[str, object] = {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.suffix != ".mov" and p.name != "summary.json"
    }
    for path in sorted(out.rglob("*.mov")):
        files[str(path.relative_to(out))] = alpha_plane(path).tobytes()
    return files


@pytest.mark.parametrize("cut", [3, 6])
def test_a_resumed_soft_run_writes_the_mattes_of_an_uninterrupted_one(
    media, soft_run, tmp_path, monkeypatch, interrupt_at, cut
):
    out = tmp_path / "out"
    args = run_args(media, out, "--soft", "-f", "prores", "-f", "y4m")
    interrupt_at(cut)
    assert runner.invoke(app, args).exit_code == 130
    assert len(list((out / STATE_FOLDER / "clip" / "alpha").glob("*.png"))) == cut
    monkeypatch.undo()
    assert "read back from an earlier run" in invoke(args)
    assert outputs(out) == outputs(soft_run)


def test_mattes_added_to_a_finished_soft_run_come_from_the_kept_soft_mattes(
    media, soft_run, tmp_path, monkeypatch
):
    """The matte folder removed: written again from the state, without the model."""
    out = tmp_path / "out"
    args = run_args(media, out, "--soft", "-f", "prores", "-f", "y4m")
    invoke(args)
    for path in sorted((out / "matte").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()

    def no_model(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr("seggpt_video.predictor.SegGPTPredictor.paint", no_model)
    assert f"{FRAMES} read back from an earlier run" in invoke(args)
    assert outputs(out) == outputs(soft_run)


@pytest.mark.parametrize(
    "changed,named",
    [([], "soft"), (["--soft", "--refine", "none"], "refine")],
    ids=["without --soft", "another --refine"],
)
def test_a_folder_of_a_soft_run_refuses_other_settings(media, soft_run, tmp_path, changed, named):
    out = tmp_path / "out"
    invoke(run_args(media, out, "--soft"))
    before = outputs(out)
    result = runner.invoke(app, run_args(media, out, *changed))
    assert isinstance(result.exception, UserError)  # the command line's exit 2
    assert f"other settings ({named})" in str(result.exception)
    assert outputs(out) == before


# --- the mattes themselves --------------------------------------------------------------------


def test_soft_alpha_is_above_127_exactly_where_the_labels_are_even_at_ties():
    generator = torch.Generator().manual_seed(0)
    shares = torch.rand(2, 4, 16, 16, generator=generator).mul(4).round()  # many ties
    shares[:, :, 0, 0] = 1.0  # a four-way tie
    shares = (shares + 1e-3) / (shares + 1e-3).sum(dim=1, keepdim=True)
    object_ids = [2, 5, 9]
    labels = torch.tensor([0, *object_ids], dtype=torch.uint8)[shares.argmax(dim=1)]
    alpha = soft_alpha(shares, labels, object_ids)
    assert alpha.shape == (2, 4, 16, 16) and alpha.dtype == torch.uint8
    assert torch.equal(alpha[:, 0] > 127, labels != 0)
    for channel, object_id in enumerate(object_ids, start=1):
        assert torch.equal(alpha[:, channel] > 127, labels == object_id)
        assert (alpha[:, 0] >= alpha[:, channel]).all()


def test_one_object_s_soft_matte_is_its_score_levelled():
    """Its score, 0 below MATTE_LEVELS and 255 above 1 - MATTE_LEVELS, linear between."""
    score = torch.linspace(0, 1, 101).reshape(1, 1, 1, 101)
    shares = torch.cat([1 - score, score], dim=1)
    labels = (score[:, 0] > 0.5).to(torch.uint8) * 3
    alpha = soft_alpha(shares, labels, [3])
    levelled = ((score[:, 0] - MATTE_LEVELS) / (1 - 2 * MATTE_LEVELS)).clamp(0, 1)
    assert torch.equal(alpha[:, 0], alpha[:, 1])
    assert (alpha[:, 1].float() - (levelled * 255).round()).abs().max() <= 1  # 0.5 pinned below
    assert (alpha[:, 1][score[:, 0] <= MATTE_LEVELS] == 0).all()
    assert (alpha[:, 1][score[:, 0] >= 1 - MATTE_LEVELS] == 255).all()
    assert ((alpha[:, 1] > 0) & (alpha[:, 1] < 255)).sum() >= 75


def test_hard_alpha_is_the_union_then_each_object():
    labels = np.array([[0, 2, 7], [7, 7, 0]], dtype=np.uint8)
    alpha = hard_alpha(labels, [2, 7])
    assert alpha.shape == (3, 2, 3)
    assert np.array_equal(alpha[0], (labels != 0) * 255)
    assert np.array_equal(alpha[1], (labels == 2) * 255)
    assert np.array_equal(alpha[2], (labels == 7) * 255)


def test_the_state_keeps_the_soft_mattes_of_a_frame(soft_run):
    state = soft_run / STATE_FOLDER / "clip"
    labels, mattes = masks_and_mattes(soft_run)
    with Image.open(state / "alpha" / "00004.png") as image:
        assert image.mode == "L" and image.size == (WIDTH, 3 * HEIGHT)
        kept = np.asarray(image).reshape(3, HEIGHT, WIDTH)
    assert np.array_equal(kept[1], mattes[1][4]) and np.array_equal(kept[2], mattes[2][4])
    with av.open(str(soft_run / "matte" / "object_1.mkv")) as container:
        assert sum(1 for _ in container.decode(video=0)) == FRAMES
