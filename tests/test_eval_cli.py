"""``seggpt-video eval`` end to end on tiny datasets made in tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import typer.core
import typer.main
from test_eval_helpers import SEQUENCES, ground_truth, make_davis, save_palette, write_predictions
from typer.testing import CliRunner

from seggpt_video.cli.app import app, main
from seggpt_video.evaluation.datasets import open_benchmark
from seggpt_video.io.masks import read_mask

runner = CliRunner()


def eval_args(*args) -> list[str]:
    """Command line for `eval` (Typer runs a lone command without its name)."""
    group = isinstance(typer.main.get_command(app), typer.core.TyperGroup)
    return ["eval", *map(str, args)] if group else list(map(str, args))


def invoke(*args):
    result = runner.invoke(app, eval_args(*args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def run_main(*args):
    """Through main(), in a subprocess as the installed command runs."""
    code = "from seggpt_video.cli.app import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *eval_args(*args)], capture_output=True, text=True, timeout=120
    )


def main_error(capsys, monkeypatch, *args) -> str:
    """Run main() in this process; return its stderr after checking it exits 2 in one line."""
    monkeypatch.setattr(sys, "argv", ["seggpt-video", *eval_args(*args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    return stderr


@pytest.fixture
def davis(tmp_path):
    return make_davis(tmp_path / "DAVIS")


def drop_object_2(sequence, frame):
    labels = ground_truth(sequence, frame)
    labels[labels == 2] = 0
    return labels


def test_scores_predictions_and_writes_the_official_csvs(davis, tmp_path):
    predictions = write_predictions(tmp_path / "pred", drop_object_2)
    result = invoke(davis, "--predictions", predictions, "--output", tmp_path / "out")
    global_csv = (tmp_path / "out/global_results-val.csv").read_text()
    assert global_csv.splitlines()[1] == "0.667,0.667,0.667,0.000,0.667,0.667,0.000"
    sequence_csv = (tmp_path / "out/per-sequence_results-val.csv").read_text()
    assert sequence_csv.splitlines()[2] == "alpha_2,0.000,0.000"
    assert "J&F-Mean" in result.output and "0.667" in result.output


def test_results_go_beside_the_predictions_by_default(davis, tmp_path):
    predictions = write_predictions(tmp_path / "pred", ground_truth)
    result = invoke(davis, "-p", predictions, "--sequences", "beta")
    lines = (predictions / "per-sequence_results-val.csv").read_text().splitlines()
    assert lines == ["Sequence,J-Mean,F-Mean", "beta_1,1.000,1.000"]
    assert "1 chosen sequence only" in " ".join(result.output.split())
    # A broken sequence that was not asked for does not stop the one that was.
    (davis / "Annotations/480p/alpha/00000.png").unlink()
    invoke(davis, "-p", predictions, "--sequences", "beta")


def test_shards_run_one_after_another_merge_to_the_same_csvs(davis, tmp_path):
    predictions = write_predictions(tmp_path / "pred", drop_object_2)
    invoke(davis, "-p", predictions, "-o", tmp_path / "whole")
    first = invoke(davis, "-p", predictions, "-o", tmp_path / "sharded", "--shard", "1/2")
    assert "scored 1 of 2 sequences" in " ".join(first.output.split())
    assert not (tmp_path / "sharded/global_results-val.csv").exists()
    invoke(davis, "-p", predictions, "-o", tmp_path / "sharded", "--shard", "2/2")
    for name in ("global_results-val.csv", "per-sequence_results-val.csv"):
        assert (tmp_path / "sharded" / name).read_text() == (tmp_path / "whole" / name).read_text()


def test_rerun_uses_the_cache_and_notices_changed_predictions(davis, tmp_path):
    predictions = write_predictions(tmp_path / "pred", ground_truth)
    invoke(davis, "-p", predictions, "-o", tmp_path / "out")
    cache = tmp_path / "out/.eval-cache/alpha.json"
    stamp = cache.stat().st_mtime_ns
    invoke(davis, "-p", predictions, "-o", tmp_path / "out")
    assert cache.stat().st_mtime_ns == stamp  # not rescored
    changed = predictions / "alpha/00002.png"
    save_palette(changed, np.zeros_like(ground_truth("alpha", 2)))
    os.utime(changed, ns=(stamp + 10**9, stamp + 10**9))
    invoke(davis, "-p", predictions, "-o", tmp_path / "out")
    assert json.loads(cache.read_text())["J"][0][1] == 0.0
    lines = (tmp_path / "out/per-sequence_results-val.csv").read_text().splitlines()
    assert lines[1].startswith("alpha_1,0.750,")


def test_user_errors_are_one_line_and_exit_2(davis, tmp_path, capsys, monkeypatch):
    predictions = write_predictions(tmp_path / "pred", ground_truth)
    (predictions / "beta/00002.png").unlink()
    result = run_main(davis, "-p", predictions)
    assert result.returncode == 2
    assert "beta/00002.png: missing prediction for sequence beta frame 00002" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1

    error = main_error(capsys, monkeypatch, davis, "-p", predictions, "--split", "test")
    assert "ImageSets/2017/test.txt" in error
    error = main_error(capsys, monkeypatch, davis, "-p", predictions, "--shard", "3/2")
    assert "--shard 3/2" in error
    error = main_error(capsys, monkeypatch, davis)
    assert "--output" in error


def test_runs_the_model_then_scores_and_resumes(davis, tmp_path):
    from seggpt_video.model import build_model, save_checkpoint

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny.safetensors"
    save_checkpoint(build_model("test-small"), checkpoint)
    out = tmp_path / "run"
    # Only frame 0's mask goes to the model: the other masks are the answers.
    assert list(open_benchmark(davis).sequences[1].prompts()) == [0]
    invoke(davis, "--checkpoint", checkpoint, "-o", out, "--sequences", "beta", "--memory", "2")
    frames = sorted((out / "beta").glob("*.png"))
    assert [f.stem for f in frames] == [f"{i:05d}" for i in range(SEQUENCES["beta"])]
    assert np.array_equal(read_mask(frames[0]), ground_truth("beta", 0))
    assert (out / "global_results-val.csv").is_file()
    stamps = [f.stat().st_mtime_ns for f in frames]
    invoke(davis, "--checkpoint", checkpoint, "-o", out, "--sequences", "beta", "--memory", "2")
    assert [f.stat().st_mtime_ns for f in frames] == stamps  # finished sequence not rerun
    result = runner.invoke(
        app, eval_args(davis, "--checkpoint", checkpoint, "-o", out, "--memory", "3")
    )
    assert result.exit_code != 0 and "other settings" in str(result.exception)


def make_youtube_vos(root):
    """Two videos; in `late` object 2 starts at frame 00010 (frames every 5th)."""
    meta = {"videos": {}}
    for video, starts in {"early": {"1": "00000"}, "late": {"1": "00000", "2": "00010"}}.items():
        names = [f"{i:05d}" for i in range(0, 20, 5)]
        for name in names:
            frame = root / "JPEGImages" / video / f"{name}.jpg"
            frame.parent.mkdir(parents=True, exist_ok=True)
            from PIL import Image

            Image.fromarray(np.full((16, 24, 3), 90, np.uint8)).save(frame)
        objects = {}
        for object_id, start in starts.items():
            labels = np.zeros((16, 24), np.uint8)
            labels[2:8, 2 + 4 * int(object_id) : 8 + 4 * int(object_id)] = int(object_id)
            save_palette(root / "Annotations" / video / f"{start}.png", labels)
            objects[object_id] = {"category": "thing", "frames": names[names.index(start) :]}
        meta["videos"][video] = {"objects": objects}
    (root / "meta.json").write_text(json.dumps(meta))
    return root


def test_youtube_vos_predictions_become_a_submission_zip(tmp_path, capsys, monkeypatch):
    root = make_youtube_vos(tmp_path / "valid")
    predictions = tmp_path / "pred"
    for video in ("early", "late"):
        for i in range(0, 20, 5):
            save_palette(predictions / video / f"{i:05d}.png", np.zeros((16, 24), np.uint8))
    result = invoke(root, "-p", predictions, "-o", tmp_path / "out")
    assert "No local score" in " ".join(result.output.split())
    with zipfile.ZipFile(tmp_path / "out/submission.zip") as zipped:
        names = sorted(zipped.namelist())
    assert names[0] == "Annotations/early/00000.png" and len(names) == 8
    assert all(name.startswith("Annotations/") for name in names)

    (predictions / "late/00015.png").unlink()
    error = main_error(capsys, monkeypatch, root, "-p", predictions, "-o", tmp_path / "out2")
    assert "late/00015.png: missing mask" in error
    assert not (tmp_path / "out2/submission.zip").exists()


def test_youtube_vos_runs_the_model_with_objects_starting_late(tmp_path):
    from seggpt_video.model import build_model, save_checkpoint

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny.safetensors"
    save_checkpoint(build_model("test-small"), checkpoint)
    root = make_youtube_vos(tmp_path / "valid")
    result = invoke(root, "--checkpoint", checkpoint, "-o", tmp_path / "out")
    assert "No local score" in " ".join(result.output.split())
    # Where object 2 starts, its given mask is used as it is.
    assert list(open_benchmark(root).sequences[1].prompts()) == [0, 2]
    late = read_mask(tmp_path / "out/Annotations/late/00010.png")
    assert (late == 2).sum() == 36
    with zipfile.ZipFile(tmp_path / "out/submission.zip") as zipped:
        assert len(zipped.namelist()) == 8


def test_davis_test_split_with_first_masks_only_is_not_scored(davis, tmp_path):
    for mask in (davis / "Annotations/480p").glob("*/*.png"):
        if mask.stem != "00000":
            mask.unlink()
    predictions = write_predictions(tmp_path / "pred", ground_truth)
    result = invoke(davis, "-p", predictions, "-o", tmp_path / "out")
    assert "No local score" in " ".join(result.output.split())
    assert not (tmp_path / "out/global_results-val.csv").exists()


@pytest.mark.slow
def test_torchrun_ranks_share_the_sequences_and_rank_0_merges(davis, tmp_path):
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    entry = os.path.join(os.path.dirname(sys.executable), "seggpt-video")
    predictions = write_predictions(tmp_path / "pred", drop_object_2)
    command = [torchrun, "--nproc_per_node=2", "--master_port=29517", "--no-python", entry]
    subprocess.run(
        [*command, *eval_args(davis, "-p", predictions, "-o", tmp_path / "ranks")],
        check=True,
        capture_output=True,
        timeout=300,
    )
    invoke(davis, "-p", predictions, "-o", tmp_path / "alone")
    assert sorted(p.name for p in (tmp_path / "ranks/.eval-cache").iterdir()) == [
        "alpha.json",
        "beta.json",
    ]
    for name in ("global_results-val.csv", "per-sequence_results-val.csv"):
        assert (tmp_path / "ranks" / name).read_text() == (tmp_path / "alone" / name).read_text()


def test_eval_examples_are_prompts_beside_the_given_masks_and_part_of_the_settings(davis, tmp_path):
    """--example: the same sequence's masks as the API gives with that example; recorded by
    content in predictions.json, so another example is another setting."""
    from PIL import Image

    import seggpt_video

    sequence = open_benchmark(davis).sequences[1]
    image = tmp_path / "example.png"
    Image.fromarray(next(sequence.iter_images())).save(image)
    mask = sequence.annotated[0]
    out = tmp_path / "run"
    model = ["--model", "seggpt-tiny", "--device", "cpu", "--dtype", "fp32", "--memory", "2"]
    invoke(davis, "-o", out, "--sequences", sequence.name, "--example", f"{image}:{mask}", *model)
    recorded = json.loads((out / "predictions.json").read_text())
    assert [Path(e["image"]).name for e in recorded["examples"]] == ["example.png"]
    segmenter = seggpt_video.load("seggpt-tiny", device="cpu", dtype="fp32", memory=2)
    expected = segmenter.segment(
        sequence.frames[0].parent, masks=sequence.prompts(), examples=[(image, mask)]
    )
    for frame in expected:
        written = read_mask(out / sequence.name / f"{sequence.frame_names[frame.index]}.png")
        assert np.array_equal(written, frame.labels), frame.index
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)  # another example, same path
    write_mask = tmp_path / "m.png"
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(write_mask)
    result = runner.invoke(
        app, eval_args(davis, "-o", out, "--sequences", sequence.name, "--example",
                       f"{image}:{write_mask}", *model)
    )  # fmt: skip
    assert result.exit_code != 0 and "other settings" in str(result.exception)
