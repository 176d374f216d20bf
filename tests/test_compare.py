"""``seggpt-video compare A B``: which sequences got better or worse between two evaluations."""

from __future__ import annotations

import sys

import pytest
import typer.core
import typer.main
from PIL import Image
from test_eval_cli import invoke
from test_eval_helpers import ground_truth, make_davis, write_predictions
from typer.testing import CliRunner

from seggpt_video.cli.app import app, main
from seggpt_video.evaluation.compare import compare_results

runner = CliRunner()
HEADER = "Sequence,J-Mean,F-Mean\n"


def compare_args(*args) -> list[str]:
    group = isinstance(typer.main.get_command(app), typer.core.TyperGroup)
    return ["compare", *map(str, args)] if group else list(map(str, args))


def write_csv(path, rows: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + rows)
    return path


@pytest.fixture
def two_runs(tmp_path):
    a = write_csv(
        tmp_path / "before/per-sequence_results-val.csv",
        "alpha_1,0.500,0.600\nbeta_1,0.800,0.900\ngamma_1,0.300,0.300\nonly-a_1,0.1,0.1\n",
    )
    b = write_csv(
        tmp_path / "after/per-sequence_results-val.csv",
        "gamma_1,0.300,0.300\nbeta_1,0.700,0.700\nalpha_1,0.900,0.700\n",
    )
    return a, b


def test_finds_the_better_and_the_worse_sequences(two_runs):
    a, b = two_runs
    comparison = compare_results(a.parent, b.parent)
    assert [row.name for row in comparison.rows] == ["alpha_1", "gamma_1", "beta_1"]
    assert [row.verdict for row in comparison.rows] == ["better", "same", "worse"]
    alpha, _, beta = comparison.rows
    assert alpha.delta_j == pytest.approx(0.4) and alpha.delta_f == pytest.approx(0.1)
    assert alpha.delta_j_and_f == pytest.approx(0.25)
    assert beta.delta_j_and_f == pytest.approx(-0.15)
    assert (comparison.n_better, comparison.n_worse) == (1, 1)
    assert comparison.only_a == ["only-a_1"] and comparison.only_b == []
    assert (comparison.label_a, comparison.label_b) == ("before", "after")


def test_table_lists_changes_in_order_and_ascii(two_runs, tmp_path):
    pytest.importorskip("matplotlib")
    a, b = two_runs
    chart = tmp_path / "chart.png"
    result = runner.invoke(app, compare_args(a, b.parent, "--plot", chart))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    order = [
        next(i for i, line in enumerate(lines) if name in line) for name in ("alpha_1", "beta_1")
    ]
    assert order[0] < order[1]
    alpha_line = lines[order[0]]
    assert "+0.250" in alpha_line and "+0.400" in alpha_line and "better" in alpha_line
    assert "-0.150" in lines[order[1]] and "worse" in lines[order[1]]
    assert "1 better, 1 worse, 1 the same" in result.output
    assert "only in A (not compared): only-a_1" in result.output
    assert result.output.isascii()
    with Image.open(chart) as image:
        assert image.format == "PNG" and image.width > 100


def test_compares_two_eval_folders(tmp_path):
    davis = make_davis(tmp_path / "DAVIS")

    def drop_object_2(sequence, frame):
        labels = ground_truth(sequence, frame)
        labels[labels == 2] = 0
        return labels

    invoke(davis, "-p", write_predictions(tmp_path / "p1", ground_truth), "-o", tmp_path / "good")
    invoke(davis, "-p", write_predictions(tmp_path / "p2", drop_object_2), "-o", tmp_path / "bad")
    comparison = compare_results(tmp_path / "good", tmp_path / "bad")
    changed = {row.name: row.verdict for row in comparison.rows}
    assert changed == {"alpha_1": "same", "alpha_2": "worse", "beta_1": "same"}
    assert comparison.rows[-1].delta_j_and_f == -1.0


def test_bad_inputs_are_one_line_naming_the_file(two_runs, tmp_path, capsys, monkeypatch):
    a, b = two_runs

    def error(*args) -> str:
        """main()'s stderr, after checking it is one line and exit code 2."""
        monkeypatch.setattr(sys, "argv", ["seggpt-video", *compare_args(*args)])
        with pytest.raises(SystemExit) as exit_info:
            main()
        assert exit_info.value.code == 2
        stderr = capsys.readouterr().err
        assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
        return stderr

    assert f"{tmp_path / 'missing'}: no such file or folder" in error(a, tmp_path / "missing")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("name,score\nalpha,1\n")
    message = error(wrong, b)
    assert str(wrong) in message and "columns: name, score" in message
    other = write_csv(tmp_path / "other.csv", "delta_1,0.1,0.2\n")
    assert f"{other}: no sequence in common with {a}" in error(a, other)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert f"{empty}: no per-sequence_results-*.csv" in error(empty, b)
    write_csv(tmp_path / "before/per-sequence_results-test.csv", "alpha_1,0.1,0.1\n")
    assert "several results" in error(a.parent, b)
    assert "line 2" in error(write_csv(tmp_path / "nan.csv", "alpha_1,high,0.1\n"), b)
    headers_only = write_csv(tmp_path / "headers.csv", "")
    assert f"{headers_only}: no sequences" in error(headers_only, b)


def test_a_sequence_without_scores_is_not_a_change(tmp_path):
    a = write_csv(tmp_path / "a.csv", "alpha_1,0.5,0.5\nbeta_1,,\n")
    b = write_csv(tmp_path / "b.csv", "alpha_1,0.4,0.4\nbeta_1,0.9,0.9\n")
    comparison = compare_results(a, b)
    assert [(row.name, row.verdict) for row in comparison.rows] == [
        ("alpha_1", "worse"),
        ("beta_1", "n/a"),
    ]
    assert (comparison.mean_a, comparison.mean_b) == (0.5, 0.4)  # over alpha only
    assert (comparison.n_better, comparison.n_worse) == (0, 1)
