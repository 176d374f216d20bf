"""A run interrupted (Ctrl-C or SIGKILL) and re-run into its folder equals a run never interrupted.

Masks byte for byte (the DAVIS PNGs and the kept state), with rolling memory on (memory 2, so
predictions enter and leave the memory around the cut), for batch sizes 1 and 4, one pass per
object, and a later annotation. The overlay video is compared by the frames handed to its
encoder: x264 was seen to give other bytes for the same frames now and then inside the test
process (frame hashes checked equal), never in a process of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from synthetic_media import make_video, moving_shapes
from typer.testing import CliRunner

from seggpt_video.cli.app import app
from seggpt_video.io.masks import write_palette_png
from seggpt_video.io.state import STATE_FOLDER, RunState
from seggpt_video.model import build_model, save_checkpoint

FRAMES = 14
runner = CliRunner()


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("resume")
    frames, labels = moving_shapes(FRAMES, 48, 64, num_objects=2, seed=11)
    write_palette_png(folder / "first.png", labels[0])
    later = np.where(labels[6] == 2, 2, 0).astype(np.uint8)  # frame 6 re-annotates object 2
    write_palette_png(folder / "later.png", later)
    checkpoint = folder / "small.safetensors"
    torch.manual_seed(5)  # a fixed network: whether two ways of resuming differ depends on it
    save_checkpoint(build_model("test-small"), checkpoint)
    return {
        "video": make_video(folder / "clip.mp4", frames, fps=25),
        "first": folder / "first.png",
        "later": folder / "later.png",
        "checkpoint": checkpoint,
    }


CASES = {
    "batch 1": ["--batch-size", "1"],
    "batch 4": ["--batch-size", "4"],
    "per object": ["--per-object", "--batch-size", "2"],
    "later annotation": ["--batch-size", "4", "LATER"],
}


def run_args(media: dict[str, Path], out: Path, extra: list[str]) -> list[str]:
    args = ["run", str(media["video"]), "--mask", str(media["first"])]
    args += ["-c", str(media["checkpoint"]), "-o", str(out), "--memory", "2"]
    args += ["-f", "davis", "-f", "overlay"]
    for option in extra:
        args += ["--mask", f"6:{media['later']}"] if option == "LATER" else [option]
    return args


def outputs(out: Path) -> dict[str, bytes]:
    """Every output file but the run's timings and the encoded overlay, by relative path; the
    overlay as the frames it holds (their count and the masks drawn are checked through the
    PNGs, which it is drawn from)."""
    files = {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name not in ("summary.json", "clip_overlay.mp4")
    }
    with av.open(str(out / "clip_overlay.mp4")) as container:
        files["overlay frames"] = sum(1 for _ in container.decode(video=0))
    return files


@pytest.fixture(scope="module")
def uninterrupted(media, tmp_path_factory) -> dict[str, dict[str, bytes]]:
    results = {}
    for name, extra in CASES.items():
        out = tmp_path_factory.mktemp("whole") / "out"
        result = runner.invoke(app, run_args(media, out, extra))
        assert result.exit_code == 0, result.output
        results[name] = outputs(out)
    return results


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("cut", [3, 7, 10])
def test_ctrl_c_then_rerun_equals_an_uninterrupted_run(
    media, uninterrupted, tmp_path, monkeypatch, interrupt_at, case, cut
):
    """Cut after frame `cut` is written, in the middle of a batch for the batched cases."""
    out = tmp_path / "out"
    interrupt_at(cut)
    result = runner.invoke(app, run_args(media, out, CASES[case]))
    assert result.exit_code == 130, result.output
    kept = len(list((out / STATE_FOLDER / "clip" / "labels").glob("*.png")))
    assert kept == cut
    monkeypatch.undo()
    result = runner.invoke(app, run_args(media, out, CASES[case]))
    assert result.exit_code == 0, result.output
    assert "read back from an earlier run" in result.output
    assert outputs(out) == uninterrupted[case]


def test_killed_outright_then_rerun_equals_an_uninterrupted_run(media, uninterrupted, tmp_path):
    """SIGKILL while frames are being written: no cleanup runs, the state must still hold."""
    out = tmp_path / "out"
    args = run_args(media, out, CASES["batch 4"])
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "seggpt_video.cli", *args]
    state = out / STATE_FOLDER / "clip" / "labels"
    process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(state.glob("*.png"))) < 5 and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    if process.returncode == 0:
        pytest.skip("the run finished before it could be killed")
    finished = len(list(state.glob("*.png")))
    assert 5 <= finished < FRAMES
    assert subprocess.run(command, env=env, stderr=subprocess.PIPE).returncode == 0
    assert outputs(out) == uninterrupted["batch 4"]


def test_the_state_is_what_makes_resume_exact(media, uninterrupted, tmp_path, monkeypatch):
    """Rebuilding the memory from the frame-size masks (the old way) gives other masks (crops
    off: a crop pass is rebuilt from frame-size masks either way)."""
    out = tmp_path / "out"
    args = [*run_args(media, out, CASES["batch 1"]), "--crops", "off"]
    assert runner.invoke(app, args).exit_code == 0
    whole = outputs(out)
    state = out / STATE_FOLDER / "clip"
    for index in range(5, FRAMES):  # as if cut after frame 4
        (state / "labels" / f"{index:05d}.png").unlink()

    def from_frame_size(self, index):
        import torch.nn.functional as F
        from torch import tensor

        ids = tensor(self.labels(index))[None, None].float()
        size = self._memory.info.width
        return F.interpolate(ids, size=(size, size), mode="nearest-exact")[0, 0].byte().numpy()

    monkeypatch.setattr(RunState, "model_labels", from_frame_size)
    assert runner.invoke(app, args).exit_code == 0
    assert outputs(out) != whole
