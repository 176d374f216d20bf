"""Scoring a tiny DAVIS folder: object bookkeeping, frame exclusions, CSVs, cache, bad input."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from test_eval_helpers import (
    HEIGHT,
    WIDTH,
    ground_truth,
    make_davis,
    save_gray,
    save_palette,
    write_predictions,
)

from seggpt_video.errors import UserError
from seggpt_video.evaluation import datasets
from seggpt_video.evaluation.datasets import open_benchmark, read_labels_many
from seggpt_video.evaluation.metrics import boundary_f_measure, region_similarity
from seggpt_video.evaluation.scoring import (
    collect_cached,
    score_benchmark_sequence,
    score_predictions,
    score_sequence,
    summarize,
    write_results_csv,
)
from seggpt_video.io.masks import read_mask


@pytest.fixture
def davis(tmp_path):
    return make_davis(tmp_path / "DAVIS")


def without_object_2(sequence, frame):
    labels = ground_truth(sequence, frame)
    labels[labels == 2] = 0
    return labels


def test_ground_truth_scores_one(davis, tmp_path):
    benchmark = open_benchmark(davis)
    assert benchmark.kind == "davis2017"
    assert [s.name for s in benchmark.sequences] == ["alpha", "beta"]
    scores = score_predictions(list(benchmark.sequences), davis / "Annotations/480p", tmp_path)
    results = summarize(scores)
    assert results.global_scores == {
        "J&F-Mean": 1.0,
        "J-Mean": 1.0,
        "J-Recall": 1.0,
        "J-Decay": 0.0,
        "F-Mean": 1.0,
        "F-Recall": 1.0,
        "F-Decay": 0.0,
    }
    assert [row[0] for row in results.per_object] == ["alpha_1", "alpha_2", "beta_1"]


def test_first_and_last_frames_are_not_scored(davis, tmp_path):
    # Wrong masks on the first and last frames change nothing.
    def wrong_ends(sequence, frame):
        last = 5 if sequence == "alpha" else 4
        if frame in (0, last):
            return np.zeros((HEIGHT, WIDTH), np.uint8)
        return ground_truth(sequence, frame)

    predictions = write_predictions(tmp_path / "pred", wrong_ends)
    sequence = open_benchmark(davis).sequences[0]
    score = score_sequence(sequence, predictions)
    assert score.frames == ["00001", "00002", "00003", "00004"]
    assert (score.j == 1).all() and (score.f == 1).all()


def test_missing_object_and_decay_by_hand(davis, tmp_path):
    # alpha: object 2 never predicted -> J = F = 0 for it. beta: right on scored frame 1,
    # empty on frames 2 and 3 -> J = [1, 0, 0]: mean 1/3, recall 1/3, decay 0.5 - 0 (bins of
    # three frames: first = frames 1-2, last = frame 3).
    def predict(sequence, frame):
        if sequence == "beta" and frame >= 2:
            return np.zeros((HEIGHT, WIDTH), np.uint8)
        return without_object_2(sequence, frame)

    predictions = write_predictions(tmp_path / "pred", predict)
    benchmark = open_benchmark(davis)
    results = summarize(score_predictions(list(benchmark.sequences), predictions, tmp_path))
    per_object = {name: (j, f) for name, j, f in results.per_object}
    assert per_object["alpha_1"] == (1.0, 1.0)
    assert per_object["alpha_2"] == (0.0, 0.0)
    assert per_object["beta_1"] == pytest.approx((1 / 3, 1 / 3))
    g = results.global_scores
    assert g["J-Mean"] == pytest.approx((1 + 0 + 1 / 3) / 3)
    assert g["J-Recall"] == pytest.approx((1 + 0 + 1 / 3) / 3)
    assert g["J-Decay"] == pytest.approx((0 + 0 + 0.5) / 3)
    assert g["J&F-Mean"] == pytest.approx((g["J-Mean"] + g["F-Mean"]) / 2)


def test_csvs_use_the_official_columns_and_format(davis, tmp_path):
    predictions = write_predictions(tmp_path / "pred", without_object_2)
    benchmark = open_benchmark(davis)
    results = summarize(score_predictions(list(benchmark.sequences), predictions, tmp_path))
    global_csv, sequence_csv = write_results_csv(results, tmp_path, "val")
    assert global_csv.name == "global_results-val.csv"
    assert global_csv.read_text() == (
        "J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n"
        "0.667,0.667,0.667,0.000,0.667,0.667,0.000\n"
    )
    assert sequence_csv.name == "per-sequence_results-val.csv"
    assert sequence_csv.read_text() == (
        "Sequence,J-Mean,F-Mean\nalpha_1,1.000,1.000\nalpha_2,0.000,0.000\nbeta_1,1.000,1.000\n"
    )


def test_same_means_as_vos_benchmark_on_imperfect_predictions(davis, tmp_path):
    vos_benchmark = pytest.importorskip("vos_benchmark.benchmark")

    def shifted(sequence, frame):  # everything one frame late, object 2 two pixels off
        labels = ground_truth(sequence, max(frame - 1, 0))
        moved = np.roll(labels == 2, 2, axis=1) * 2
        return (np.where(labels == 2, 0, labels) + moved).astype(np.uint8)

    predictions = write_predictions(tmp_path / "pred", shifted)
    scores = score_predictions(list(open_benchmark(davis).sequences), predictions, tmp_path)
    _, _, _, objects = vos_benchmark.benchmark(
        [str(davis / "Annotations/480p")], [str(predictions)], num_processes=1, verbose=False
    )
    for score in scores:
        iou, boundary = objects[0][score.sequence]
        for row, object_id in enumerate(score.object_ids):
            assert np.mean(score.j[row]) * 100 == pytest.approx(iou[object_id], abs=1e-12)
            assert np.mean(score.f[row]) * 100 == pytest.approx(boundary[object_id], abs=1e-12)
    assert 0.2 < summarize(scores).global_scores["J-Mean"] < 0.95


def test_davis_2016_grayscale_masks_and_predictions(tmp_path):
    davis = make_davis(tmp_path / "DAVIS2016", year="2016", resolution="240p")
    benchmark = open_benchmark(davis, resolution="240p")
    assert benchmark.kind == "davis2016"
    predictions = tmp_path / "pred"
    for sequence in benchmark.sequences:
        for name in sequence.frame_names:
            save_gray(predictions / sequence.name / f"{name}.png", ground_truth(sequence.name, 0))
    first = read_mask(benchmark.sequences[0].annotated[0])
    assert set(np.unique(first)) == {0, 1}
    results = summarize(score_predictions(list(benchmark.sequences), predictions, tmp_path))
    assert [row[0] for row in results.per_object] == ["alpha_1", "beta_1"]
    per_object = dict((name, j) for name, j, _ in results.per_object)
    assert per_object["beta_1"] == 1.0  # beta stands still
    assert per_object["alpha_1"] < 1.0  # alpha moves


def test_void_in_ground_truth_is_background(davis, tmp_path):
    gt_file = davis / "Annotations/480p/beta/00002.png"
    labels = ground_truth("beta", 2)
    labels[0:3, 0:3] = 255
    save_palette(gt_file, labels)
    predictions = write_predictions(tmp_path / "pred", ground_truth)
    score = score_sequence(open_benchmark(davis).sequences[1], predictions)
    assert (score.j == 1).all()


def test_cache_is_reused_and_invalidated_when_a_prediction_changes(davis, tmp_path):
    predictions = write_predictions(tmp_path / "pred", ground_truth)
    sequence = open_benchmark(davis).sequences[1]
    first, cached = score_benchmark_sequence(sequence, predictions, tmp_path / "out")
    assert not cached and (first.j == 1).all()
    again, cached = score_benchmark_sequence(sequence, predictions, tmp_path / "out")
    assert cached and np.array_equal(again.j, first.j)
    changed = predictions / "beta/00002.png"
    save_palette(changed, np.zeros((HEIGHT, WIDTH), np.uint8))
    later = time.time() + 5
    os.utime(changed, (later, later))
    third, cached = score_benchmark_sequence(sequence, predictions, tmp_path / "out")
    assert not cached and third.j[0].tolist() == [1.0, 0.0, 1.0]


def test_collect_cached_reports_missing_sequences(davis, tmp_path):
    predictions = write_predictions(tmp_path / "pred", ground_truth)
    benchmark = open_benchmark(davis)
    score_predictions([benchmark.sequences[0]], predictions, tmp_path / "out")
    scores, missing = collect_cached(benchmark, predictions, tmp_path / "out")
    assert [s.sequence for s in scores] == ["alpha"] and missing == ["beta"]


def test_bad_predictions_name_the_sequence_and_frame(davis, tmp_path):
    sequence = open_benchmark(davis).sequences[0]
    predictions = write_predictions(tmp_path / "pred", ground_truth)

    (predictions / "alpha/00003.png").unlink()
    with pytest.raises(
        UserError, match=r"alpha/00003\.png: missing prediction .*alpha frame 00003"
    ):
        score_sequence(sequence, predictions)

    save_palette(predictions / "alpha/00003.png", np.zeros((HEIGHT, WIDTH + 1), np.uint8))
    with pytest.raises(UserError, match=r"alpha frame 00003 is 33x24, the ground truth is 32x24"):
        score_sequence(sequence, predictions)

    labels = ground_truth("alpha", 3)
    labels[0, 0] = 3
    save_palette(predictions / "alpha/00003.png", labels)
    with pytest.raises(UserError, match=r"alpha frame 00003 has object id 3, .* 2 object"):
        score_sequence(sequence, predictions)

    (predictions / "alpha/00003.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match=r"alpha/00003\.png: cannot read the mask"):
        score_sequence(sequence, predictions)


def test_bad_dataset_folders(davis, tmp_path):
    with pytest.raises(UserError, match=r"ImageSets/2017/test\.txt"):
        open_benchmark(davis, split="test")
    with pytest.raises(UserError, match=r"ImageSets/2016/val\.txt: split file not found"):
        open_benchmark(davis, kind="davis2016")
    (davis / "Annotations/480p/beta/00000.png").unlink()
    with pytest.raises(UserError, match=r"beta/00000\.png: sequence beta has no first-frame mask"):
        open_benchmark(davis)
    # Only the sequences asked for are checked: beta's missing mask does not stop alpha.
    assert [s.name for s in open_benchmark(davis, sequences=["alpha"]).sequences] == ["alpha"]
    other = make_davis(tmp_path / "other")
    with pytest.raises(UserError, match=r"val\.txt: no sequence gamma in this split"):
        open_benchmark(other, sequences=["beta", "gamma"])
    assert [s.name for s in open_benchmark(other, sequences=["beta"]).sequences] == ["beta"]


def shifted_object_2(sequence, frame):
    """Everything one frame late, object 2 also two pixels right: J and F between 0 and 1."""
    labels = ground_truth(sequence, max(frame - 1, 0))
    moved = np.roll(labels == 2, 2, axis=1) * 2
    return (np.where(labels == 2, 0, labels) + moved).astype(np.uint8)


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_streamed_scores_equal_the_stacked_measures(davis, tmp_path, threads):
    # Frames are scored one by one while others decode; any thread count gives the numbers of
    # the measures applied to the whole stack of masks read one after another.
    predictions = write_predictions(tmp_path / "pred", shifted_object_2)
    partial = False
    for sequence in open_benchmark(davis).sequences:
        score = score_sequence(sequence, predictions, threads=threads)
        frames = sorted(sequence.annotated)[1:-1]
        gt = np.stack([read_mask(sequence.annotated[i]) for i in frames])
        pred = np.stack([read_mask(predictions / sequence.name / f"{i:05d}.png") for i in frames])
        for row, object_id in enumerate(score.object_ids):
            assert (
                score.j[row].tolist()
                == region_similarity(gt == object_id, pred == object_id).tolist()
            )
            assert (
                score.f[row].tolist()
                == boundary_f_measure(gt == object_id, pred == object_id).tolist()
            )
        partial |= bool(((score.f > 0) & (score.f < 1)).any())
    assert partial  # boundaries partly matched, not only 0 and 1


def test_masks_are_decoded_in_order_a_bounded_way_ahead(monkeypatch, tmp_path):
    started = []

    def fake_read_mask(path):
        started.append(path)
        return np.full((2, 2), int(path.stem), np.uint8)

    monkeypatch.setattr(datasets, "read_mask", fake_read_mask)
    paths = [tmp_path / f"{i}.png" for i in range(40)]
    masks = read_labels_many(paths, threads=3)
    values = [int(next(masks)[0, 0])]
    assert len(started) <= 2 * 3 + 1  # not the whole list at once
    values += [int(mask[0, 0]) for mask in masks]
    assert values == list(range(40))
    assert len(started) == 40


def test_a_bad_frame_stops_the_decoding_threads(davis, tmp_path):
    predictions = write_predictions(tmp_path / "pred", ground_truth)
    save_palette(predictions / "alpha/00002.png", np.zeros((HEIGHT + 1, WIDTH), np.uint8))
    before = threading.active_count()
    with pytest.raises(UserError, match=r"alpha frame 00002 is 32x25") as error:
        score_sequence(open_benchmark(davis).sequences[0], predictions, threads=3)
    # Stopped when the error leaves score_sequence, not when its traceback is let go.
    assert threading.active_count() == before
    assert error.traceback


def test_ground_truth_frames_of_another_size_are_refused(davis, tmp_path):
    save_palette(davis / "Annotations/480p/beta/00002.png", np.zeros((HEIGHT, WIDTH + 2), np.uint8))
    predictions = write_predictions(tmp_path / "pred", ground_truth)
    with pytest.raises(UserError, match=r"beta/00002\.png: ground truth .* is 34x24, .* 32x24"):
        score_sequence(open_benchmark(davis).sequences[1], predictions)
