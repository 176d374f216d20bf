"""`seggpt-video run` end to end, through the command line, on videos the tests make."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image
from synthetic_media import cut_file, ffmpeg_frames, make_frame_folder, make_video, moving_shapes
from typer.testing import CliRunner

from seggpt_video.cli.app import app
from seggpt_video.io.masks import write_palette_png
from seggpt_video.model import build_model, save_checkpoint

FRAMES = 6
HEIGHT, WIDTH = 48, 64
runner = CliRunner()


@pytest.fixture(scope="module")
def scene():
    return moving_shapes(FRAMES, HEIGHT, WIDTH, num_objects=2, seed=3)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "small.safetensors"
    save_checkpoint(build_model("test-small"), path)
    return path


@pytest.fixture
def clip(tmp_path: Path, scene) -> tuple[Path, Path]:
    frames, labels = scene
    video = make_video(tmp_path / "clip.mp4", frames, fps=25)
    mask = tmp_path / "first.png"
    write_palette_png(mask, labels[0])
    return video, mask


def invoke(*args: str) -> object:
    result = runner.invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def cli(*args: str, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    """The installed command in its own process, as a user runs it."""
    command = [sys.executable, "-m", "seggpt_video.cli", *map(str, args)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(Path(args[-1]).parent / "hf")}
    return subprocess.run(command, stdout=stdout, stderr=subprocess.PIPE, env=env)


def png_labels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "P"
        return np.asarray(image)


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv", ".webm", ".avi", "jpg", "png"])
def test_every_input_kind_gives_every_frame(tmp_path: Path, scene, checkpoint, suffix):
    frames, labels = scene
    if suffix.startswith("."):
        video = make_video(tmp_path / f"clip{suffix}", frames, fps=25)
    else:
        video = make_frame_folder(
            tmp_path / "clip", frames, ext=suffix, names=[f"f{i}" for i in range(FRAMES)]
        )
    write_palette_png(tmp_path / "m.png", labels[0])
    invoke(*run_args(video, tmp_path / "m.png", checkpoint, tmp_path / "out"))
    written = sorted((tmp_path / "out" / "clip").glob("*.png"))
    assert len(written) == FRAMES
    if suffix in ("jpg", "png"):
        assert {p.stem for p in written} == {f"f{i}" for i in range(FRAMES)}
    assert np.array_equal(png_labels(written[0]), labels[0])
    assert png_labels(written[-1]).shape == (HEIGHT, WIDTH)


def test_every_output_format(tmp_path: Path, clip, checkpoint, scene):
    video, mask = clip
    out = tmp_path / "out"
    args = ["run", video, "--mask", mask, "-c", checkpoint, "-o", out, "--memory", "2"]
    for name in ("davis", "youtube-vos", "overlay", "matte", "prores", "summary"):
        args += ["-f", name]
    invoke(*args)
    davis = sorted((out / "clip").glob("*.png"))
    ytvos = sorted((out / "Annotations" / "clip").glob("*.png"))
    assert (
        [p.name for p in davis]
        == [f"{i:05d}.png" for i in range(FRAMES)]
        == [p.name for p in ytvos]
    )
    with av.open(str(out / "clip_overlay.mp4")) as container:
        stream = container.streams.video[0]
        decoded = [f for f in container.decode(stream)]
        assert len(decoded) == FRAMES and float(stream.average_rate) == 25
    for object_id in (1, 2):
        mattes = sorted((out / "matte" / f"object_{object_id}").glob("*.png"))
        assert len(mattes) == FRAMES
        labels = png_labels(davis[3])
        matte = np.asarray(Image.open(mattes[3]))
        assert np.array_equal(matte > 0, labels == object_id)  # the matte is that object's mask
        lossless = ffmpeg_frames(out / "matte" / f"object_{object_id}.mkv", WIDTH, HEIGHT, "gray")
        assert lossless.shape[0] == FRAMES and np.array_equal(lossless[3], matte)
        assert (out / "matte" / f"object_{object_id}.mov").stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_frames"] == FRAMES and summary["objects"] == [1, 2]
    first_area = int((scene[1][0] == 1).sum())
    assert summary["area_pixels"]["1"][0] == first_area
    assert set(summary["timings_seconds"]) >= {"total", "decode", "write"}


def test_masks_stream_to_ffmpeg_through_a_pipe(tmp_path: Path, clip, checkpoint):
    """`run ... --format matte -o - | ffmpeg -i - matte.mkv` as a user types it."""
    video, mask = clip
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    target = tmp_path / "matte.mkv"
    producer = subprocess.Popen(
        [sys.executable, "-m", "seggpt_video.cli", "run", str(video), "--mask", str(mask),
         "-c", str(checkpoint), "--format", "matte", "-o", "-"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    consumer = subprocess.run(
        [ffmpeg, "-v", "error", "-i", "-", "-c:v", "ffv1", str(target)],
        stdin=producer.stdout, capture_output=True,
    )  # fmt: skip
    producer.stdout.close()
    assert producer.wait() == 0, producer.stderr.read().decode()
    assert consumer.returncode == 0, consumer.stderr.decode()
    assert b"frames/s" in producer.stderr.read()  # progress went to stderr, not into the pipe
    decoded = ffmpeg_frames(target, WIDTH, HEIGHT, "gray")
    assert decoded.shape == (FRAMES, HEIGHT, WIDTH)
    assert set(np.unique(decoded)) <= {0, 255}


def run_args(video: Path, mask: Path, checkpoint: Path, out: Path, *formats: str) -> list:
    """Arguments of a run with the test model into ``out`` (default format: davis)."""
    args = ["run", video, "--mask", mask, "-c", checkpoint, "-o", out]
    for name in formats or ("davis",):
        args += ["-f", name]
    return args


def test_lost_outputs_and_added_formats_come_back_without_the_model(
    tmp_path: Path, clip, checkpoint, monkeypatch
):
    video, mask = clip
    out = tmp_path / "out"
    args = run_args(video, mask, checkpoint, out, "davis", "overlay")
    invoke(*args)
    full = {p.name: (out / "clip" / p.name).read_bytes() for p in (out / "clip").glob("*.png")}
    for name in ("00004.png", "00005.png"):
        (out / "clip" / name).unlink()
    from seggpt_video.predictor import SegGPTPredictor

    def no_model(*_):
        raise AssertionError("the model ran for a finished clip")

    monkeypatch.setattr(SegGPTPredictor, "paint", no_model)
    result = invoke(*args, "-f", "matte")
    assert f"{FRAMES} read back" in result.output
    assert {p.name: p.read_bytes() for p in (out / "clip").glob("*.png")} == full
    assert len(list((out / "matte").rglob("*.png"))) == 2 * FRAMES
    # Different settings into the same folder are refused rather than mixed.
    result = runner.invoke(app, [str(a) for a in args] + ["--memory", "3"])
    assert result.exit_code != 0
    assert "memory" in str(result.exception)


def test_an_interrupted_run_leaves_no_half_written_file(
    tmp_path: Path, clip, checkpoint, monkeypatch
):
    video, mask = clip
    out = tmp_path / "out"
    args = run_args(video, mask, checkpoint, out, "davis", "overlay")
    from seggpt_video.engine import _Propagation

    original = _Propagation.predict

    def interrupted(self, batch):
        if batch[0][0] == 3:
            raise KeyboardInterrupt
        yield from original(self, batch)

    monkeypatch.setattr(_Propagation, "predict", interrupted)
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 130
    assert "interrupted after 3 of 6 frames" in result.output
    assert not (out / "clip_overlay.mp4").exists()
    assert not [p for p in out.rglob("*") if "partial" in p.name]
    assert len(list((out / "clip").glob("*.png"))) == 3
    monkeypatch.setattr(_Propagation, "predict", original)
    assert "3 read back" in invoke(*args).output
    assert (out / "clip_overlay.mp4").exists()


def test_a_frame_range_is_segmented_as_a_clip_of_its_own(tmp_path: Path, scene, checkpoint):
    """--frames 2:5 equals running the clip made of frames 2-4, outputs named by the source."""
    frames, labels = scene
    whole = make_frame_folder(tmp_path / "whole", frames, ext="png")
    part = make_frame_folder(tmp_path / "part", frames[2:5], names=["00002", "00003", "00004"])
    write_palette_png(tmp_path / "m.png", labels[2])
    invoke("run", whole, "--mask", f"2:{tmp_path / 'm.png'}", "--frames", "2:5",
           "-c", checkpoint, "-o", tmp_path / "a", "-f", "davis", "-f", "overlay")  # fmt: skip
    invoke("run", part, "--mask", tmp_path / "m.png",
           "-c", checkpoint, "-o", tmp_path / "b", "-f", "davis")  # fmt: skip
    names = sorted(p.name for p in (tmp_path / "a/whole").glob("*.png"))
    assert names == sorted(p.name for p in (tmp_path / "b/part").glob("*.png"))
    assert names == ["00002.png", "00003.png", "00004.png"]
    for name in names:
        assert np.array_equal(
            png_labels(tmp_path / "a/whole" / name), png_labels(tmp_path / "b/part" / name)
        )
    with av.open(str(tmp_path / "a/whole_overlay.mp4")) as container:
        stream = container.streams.video[0]
        first = next(container.decode(stream))
        assert stream.frames == 3 and first.time == 0


def test_later_annotations_add_objects(tmp_path: Path, clip, checkpoint, scene):
    video, _ = clip
    _, labels = scene
    only_first = np.where(labels[0] == 1, 1, 0).astype(np.uint8)
    write_palette_png(tmp_path / "a.png", only_first)
    write_palette_png(tmp_path / "b.png", labels[3])
    out = tmp_path / "out"
    invoke("run", video, "--mask", tmp_path / "a.png", "--mask", f"3:{tmp_path / 'b.png'}",
           "-c", checkpoint, "-o", out, "-f", "davis")  # fmt: skip
    assert set(np.unique(png_labels(out / "clip" / "00001.png"))) <= {0, 1}
    assert np.array_equal(png_labels(out / "clip" / "00003.png") == 2, labels[3] == 2)


def test_rotated_portrait_odd_sized_video(tmp_path: Path, checkpoint):
    frames, labels = moving_shapes(5, 37, 50, num_objects=1, seed=5)
    video = make_video(tmp_path / "phone.mp4", frames, fps=30, rotation=90)
    write_palette_png(tmp_path / "m.png", np.ascontiguousarray(np.rot90(labels[0])))
    invoke(*run_args(video, tmp_path / "m.png", checkpoint, tmp_path / "out"))
    written = sorted((tmp_path / "out" / "phone").glob("*.png"))
    assert len(written) == 5 and png_labels(written[2]).shape == (50, 37)  # upright


BAD_INPUTS = {
    "missing video": (lambda t, v, m: [t / "nope.mp4", "--mask", m], "nope.mp4: no such file"),
    "truncated video": (lambda t, v, m: [cut_file(v, 0.3), "--mask", m], "cut_clip.mp4"),
    "not a video": (lambda t, v, m: [garbage(t), "--mask", m], "garbage.mp4"),
    "missing mask": (lambda t, v, m: [v, "--mask", t / "none.png"], "none.png: no such mask"),
    "mask size": (lambda t, v, m: [v, "--mask", small_mask(t)], "--resize-mask"),
    "empty mask": (lambda t, v, m: [v, "--mask", empty_mask(t)], "empty.png: the mask is empty"),
    "jpeg mask": (lambda t, v, m: [v, "--mask", jpeg_mask(t)], "noisy.jpg"),
}


def garbage(tmp: Path) -> Path:
    (tmp / "garbage.mp4").write_bytes(np.random.default_rng(1).bytes(5000))
    return tmp / "garbage.mp4"


def small_mask(tmp: Path) -> Path:
    write_palette_png(tmp / "small.png", np.ones((10, 10), np.uint8))
    return tmp / "small.png"


def empty_mask(tmp: Path) -> Path:
    write_palette_png(tmp / "empty.png", np.zeros((HEIGHT, WIDTH), np.uint8))
    return tmp / "empty.png"


def jpeg_mask(tmp: Path) -> Path:
    noise = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp / "noisy.jpg", quality=60)
    return tmp / "noisy.jpg"


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_without_traceback(tmp_path: Path, clip, checkpoint, case):
    video, mask = clip
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.png").write_bytes(b"earlier output")
    make_args, expected = BAD_INPUTS[case]
    result = cli("run", *make_args(tmp_path, video, mask), "-c", checkpoint, "-o", out)
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], stderr
    assert (out / "keep.png").read_bytes() == b"earlier output"


def test_resize_mask_accepts_a_differently_sized_mask(tmp_path: Path, clip, checkpoint, scene):
    video, _ = clip
    big = np.kron(scene[1][0], np.ones((2, 2), np.uint8))
    write_palette_png(tmp_path / "big.png", big)
    invoke("run", video, "--mask", tmp_path / "big.png", "--resize-mask", "-c", checkpoint,
           "-o", tmp_path / "out", "-f", "davis")  # fmt: skip
    assert np.array_equal(png_labels(tmp_path / "out" / "clip" / "00000.png"), scene[1][0])


def test_no_weights_offline_is_a_clear_error(tmp_path: Path, clip):
    video, mask = clip
    result = cli(
        "run", video, "--mask", mask, "--model", "seggpt-vit-large", "-o", tmp_path / "out"
    )
    stderr = result.stderr.decode()
    assert result.returncode == 2 and "Traceback" not in stderr
    assert "seggpt-vit-large: weights not cached" in stderr and "--checkpoint" in stderr


def test_a_settings_mismatch_is_refused_before_the_model_loads(tmp_path: Path, clip):
    """A finished folder with another --memory: one line naming run.json and the setting, and
    neither the default-model note nor the model line (no model was loaded)."""
    video, mask = clip
    out = tmp_path / "out"
    first = cli("run", video, "--mask", mask, "-f", "davis", "--memory", "1", "-o", out)
    assert first.returncode == 0, first.stderr.decode()
    assert b"using the packaged small model" in first.stderr  # the default model loaded then
    kept = {p: p.read_bytes() for p in sorted(out.rglob("*.png"))}
    again = cli("run", video, "--mask", mask, "-f", "davis", "--memory", "3", "-o", out)
    lines = [line for line in again.stderr.decode().splitlines() if line.strip()]
    assert again.returncode == 2 and len(lines) == 1, lines
    assert "run.json" in lines[0] and "memory" in lines[0]
    assert {p: p.read_bytes() for p in sorted(out.rglob("*.png"))} == kept
