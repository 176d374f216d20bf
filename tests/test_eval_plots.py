"""``seggpt-video eval --plots``: the three kinds of picture, from the same numbers as the CSVs."""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest
from PIL import Image
from test_eval_cli import invoke, main_error
from test_eval_helpers import ground_truth, make_davis, write_predictions

from seggpt_video.evaluation.plots import summarize_sequences, worst_frames
from seggpt_video.evaluation.scoring import SequenceScore

pytest.importorskip("matplotlib")


def one_frame_wrong(sequence: str, frame: int) -> np.ndarray:
    """alpha's object 1 one pixel off (J between 0 and 1); beta's frame 2 predicted empty."""
    labels = ground_truth(sequence, frame)
    if sequence == "alpha":
        moved = np.zeros_like(labels)
        moved[:, 1:] = labels[:, :-1] == 1
        moved[labels == 2] = 2
        return moved
    if frame == 2:
        return np.zeros_like(labels)
    return labels


def assert_png(path) -> None:
    assert path.is_file() and path.stat().st_size > 0, path
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:
        assert image.width > 100 and image.height > 100


def test_plots_show_the_worst_frame_first_and_agree_with_the_scores(tmp_path):
    davis = make_davis(tmp_path / "DAVIS")
    predictions = write_predictions(tmp_path / "pred", one_frame_wrong)
    plots = tmp_path / "plots"
    result = invoke(davis, "-p", predictions, "-o", tmp_path / "out", "--plots", plots)
    assert "Plots saved" in result.output
    # Drawn on the Agg canvas directly: no pyplot state or display backend in the caller.
    assert "matplotlib.pyplot" not in sys.modules

    for name in ("sequences.png", "frames.png", "worst-frames.png"):
        assert_png(plots / name)
    with open(plots / "worst-frames.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # Every scored (object, frame): alpha 2 objects x frames 1-4, beta 1 object x frames 1-3.
    assert len(rows) == 11
    assert (rows[0]["sequence"], rows[0]["frame"], rows[0]["object"]) == ("beta", "00002", "1")
    assert float(rows[0]["J"]) == 0.0 and float(rows[0]["F"]) == 0.0
    values = [float(row["J"]) for row in rows]
    assert values == sorted(values) and 0.0 < values[1] < 1.0  # alpha's shifted object next
    # Each listed J is the very number the eval cached for that frame and object.
    for row in rows:
        cached = json.loads((tmp_path / "out/.eval-cache" / f"{row['sequence']}.json").read_text())
        column = cached["frames"].index(row["frame"])
        assert float(row["J"]) == cached["J"][int(row["object"]) - 1][column]


def test_worst_option_limits_the_sheet(tmp_path):
    davis = make_davis(tmp_path / "DAVIS")
    predictions = write_predictions(tmp_path / "pred", one_frame_wrong)
    invoke(davis, "-p", predictions, "--plots", tmp_path / "plots", "--worst", "2")
    lines = (tmp_path / "plots/worst-frames.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[1].startswith("1,beta,00002,1,0.0,")


def test_without_matplotlib_plots_says_what_to_install_before_any_work(
    tmp_path, capsys, monkeypatch
):
    davis = make_davis(tmp_path / "DAVIS")
    predictions = write_predictions(tmp_path / "pred", ground_truth)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    error = main_error(capsys, monkeypatch, davis, "-p", predictions, "--plots", tmp_path / "p")
    assert "--plots" in error and "pip install 'seggpt-video[plots]'" in error
    assert not (predictions / "global_results-val.csv").exists()  # nothing was scored
    assert not (tmp_path / "p").exists()


def test_plots_refuse_a_benchmark_without_ground_truth(tmp_path, capsys, monkeypatch):
    from test_eval_cli import make_youtube_vos

    root = make_youtube_vos(tmp_path / "valid")
    args = (root, "-p", tmp_path / "pred", "--plots", tmp_path / "p")
    error = main_error(capsys, monkeypatch, *args)
    assert "--plots" in error and "no ground truth" in error


def test_worst_frames_rank_by_j_over_all_sequences_and_objects():
    a = SequenceScore("a", ["00001", "00002"], np.array([[0.9, 0.2], [0.5, 0.7]]), np.ones((2, 2)))
    b = SequenceScore("b", ["00001"], np.array([[0.1]]), np.zeros((1, 1)))
    ranked = [(w.sequence, w.frame, w.object_id, w.j) for w in worst_frames([a, b], 3)]
    assert ranked == [("b", "00001", 1, 0.1), ("a", "00002", 1, 0.2), ("a", "00001", 2, 0.5)]


def test_sequence_summary_is_the_mean_over_objects():
    score = SequenceScore("a", ["1", "2"], np.array([[1.0, 0.0], [0.5, 0.5]]), np.ones((2, 2)))
    (summary,) = summarize_sequences([score])
    assert summary.j == 0.5 and summary.f == 1.0 and summary.j_and_f == 0.75


def test_plots_into_a_file_is_one_line(tmp_path, capsys, monkeypatch):
    davis = make_davis(tmp_path / "DAVIS")
    predictions = write_predictions(tmp_path / "pred", ground_truth)
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    error = main_error(capsys, monkeypatch, davis, "-p", predictions, "--plots", taken)
    assert f"{taken}: a file, not a folder for the plots" in error


def test_worst_default_is_the_librarys():
    import typer.main

    from seggpt_video.cli.app import app
    from seggpt_video.evaluation.plots import WORST_DEFAULT

    command = typer.main.get_command(app).commands["eval"]
    (worst,) = [param for param in command.params if param.name == "worst"]
    assert worst.default == WORST_DEFAULT  # a literal in the CLI, which imports no numpy
