"""Score a folder of predicted masks against DAVIS ground truth, as the official evaluation does.

Per sequence: the objects are ids 1..max(first-frame ground truth); the first and last frames
are left out (semi-supervised protocol); J and F per object per frame. Per object: mean,
recall and decay. Overall: the mean over all objects of all sequences, J&F-Mean = (J + F) / 2.
Each sequence's per-frame scores are cached as JSON beside the results, keyed on the sizes and
times of the files read, so a re-run (or another shard) only scores what changed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import stat as stat_module
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seggpt_video.errors import UserError
from seggpt_video.evaluation.datasets import VOID_LABEL, Benchmark, Sequence, read_labels_many
from seggpt_video.evaluation.metrics import (
    BOUNDARY_THRESHOLD,
    DiskRows,
    boundary_box,
    boundary_radius,
    frame_j_and_f,
    statistics,
)
from seggpt_video.io.atomic import write_text_atomic
from seggpt_video.io.masks import read_mask

CACHE_DIR = ".eval-cache"
CACHE_VERSION = 1
GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
SEQUENCE_COLUMNS = ("Sequence", "J-Mean", "F-Mean")


@dataclass(frozen=True)
class SequenceScore:
    """Per-frame J and F of every object of one sequence.

    j, f: (objects, frames) float64; frames are the scored ones (first and last left out).
    """

    sequence: str
    frames: list[str]
    j: np.ndarray
    f: np.ndarray

    @property
    def object_ids(self) -> list[int]:
        """Object ids 1..K, as the rows of ``j`` and ``f``."""
        return list(range(1, self.j.shape[0] + 1))

    def to_json(self) -> dict:
        """Plain types; Python's JSON floats round-trip float64 exactly."""
        return {
            "sequence": self.sequence,
            "frames": self.frames,
            "J": self.j.tolist(),
            "F": self.f.tolist(),
        }

    @classmethod
    def from_json(cls, data: dict) -> SequenceScore:
        """Inverse of ``to_json``."""
        n_frames = len(data["frames"])
        j = np.asarray(data["J"], dtype=np.float64).reshape(-1, n_frames)
        f = np.asarray(data["F"], dtype=np.float64).reshape(-1, n_frames)
        return cls(data["sequence"], list(data["frames"]), j, f)


@dataclass(frozen=True)
class Results:
    """Global and per-object numbers, in the official CSVs' columns.

    ``per_object`` rows are ``(f"{sequence}_{object_id}", J-Mean, F-Mean)``.
    """

    global_scores: dict[str, float]
    per_object: list[tuple[str, float, float]]


def score_sequence(
    sequence: Sequence,
    predictions: Path,
    bound_th: float = BOUNDARY_THRESHOLD,
    threads: int = 4,
) -> SequenceScore:
    """J and F of the masks in ``predictions/<sequence>/<frame>.png`` against the ground truth.

    Raises UserError naming the sequence and frame for a missing, unreadable or wrongly sized
    prediction, or an object id the ground truth does not have.
    """
    indices = sorted(sequence.annotated)
    frame_names = [sequence.frames[index].stem for index in indices]
    gt_paths = [sequence.annotated[index] for index in indices]
    first_gt = _without_void(read_mask(gt_paths[0]))
    n_objects = int(first_gt.max(initial=0))

    scored = slice(1, -1)  # DAVIS semi-supervised: the first and last frames are not scored
    names = frame_names[scored]
    if not names:
        raise UserError(
            f"{gt_paths[0].parent}: sequence {sequence.name} has no annotated frames to score "
            "besides the first and last"
        )
    pred_paths = [predictions / sequence.name / f"{name}.png" for name in names]
    for name, path in zip(names, pred_paths, strict=True):
        if not path.is_file():
            raise UserError(f"{path}: missing prediction for sequence {sequence.name} frame {name}")

    disk_rows = DiskRows(boundary_radius(*first_gt.shape, bound_th=bound_th))
    j = np.empty((n_objects, len(names)))
    f = np.empty((n_objects, len(names)))
    # Ground truth and prediction of each frame, interleaved: each frame is scored as soon as
    # both are decoded, while the threads decode the frames after it.
    interleaved = [path for pair in zip(gt_paths[scored], pred_paths) for path in pair]
    with closing(read_labels_many(interleaved, threads)) as labels:
        for column, (name, gt_path, path) in enumerate(zip(names, gt_paths[scored], pred_paths)):
            # Void (255) is never an object id, so ``gt == object_id`` already counts it as
            # background, as the official reader does.
            gt, pred = next(labels), next(labels)
            if gt.shape != first_gt.shape:
                raise UserError(
                    f"{gt_path}: ground truth of sequence {sequence.name} frame {name} is "
                    f"{gt.shape[1]}x{gt.shape[0]}, its first frame is "
                    f"{first_gt.shape[1]}x{first_gt.shape[0]}"
                )
            if pred.shape != gt.shape:
                raise UserError(
                    f"{path}: prediction for sequence {sequence.name} frame {name} is "
                    f"{pred.shape[1]}x{pred.shape[0]}, the ground truth is "
                    f"{gt.shape[1]}x{gt.shape[0]}"
                )
            # Every object of both masks lies in this box (with the margins frame_j_and_f
            # needs), so each object is compared inside it, not over the whole frame.
            box = boundary_box(gt, pred)
            if box is None:  # nothing in either mask: every object scores 1, as in frame_j_and_f
                j[:, column] = f[:, column] = 1.0
                continue
            gt, pred = gt[box], pred[box]
            if pred.max(initial=0) > n_objects:
                raise UserError(
                    f"{path}: prediction for sequence {sequence.name} frame {name} has object "
                    f"id {int(pred.max())}, the ground truth has {n_objects} object(s)"
                )
            for row, object_id in enumerate(range(1, n_objects + 1)):
                j[row, column], f[row, column] = frame_j_and_f(
                    gt == object_id, pred == object_id, disk_rows
                )
    return SequenceScore(sequence.name, names, j, f)


def _without_void(labels: np.ndarray) -> np.ndarray:
    """The official reader turns void (255) into background before anything else."""
    void = labels == VOID_LABEL
    return np.where(void, 0, labels).astype(np.uint8) if void.any() else labels


def cache_key(sequence: Sequence, predictions: Path, bound_th: float) -> str:
    """Fingerprint of everything a sequence's score depends on: file names, sizes, mtimes.

    Each file is named by its resolved path. A folder is resolved once, not each file in it
    (that was an lstat per path component per file: 0.2 s per pass over DAVIS 2016 val); a
    file that is itself a link is resolved on its own, so the key is what it always was.
    """
    entries: list = [CACHE_VERSION, bound_th, sequence.name]
    pred_dir = predictions / sequence.name
    pred_files = sorted(pred_dir.glob("*.png")) if pred_dir.is_dir() else []
    folders: dict[Path, str] = {}
    for path in [*(sequence.annotated[i] for i in sorted(sequence.annotated)), *pred_files]:
        link = os.lstat(path)
        if stat_module.S_ISLNK(link.st_mode):
            real, stat = str(path.resolve()), path.stat()
        else:
            if path.parent not in folders:
                folders[path.parent] = str(path.parent.resolve())
            real, stat = os.path.join(folders[path.parent], path.name), link
        entries.append((real, stat.st_size, stat.st_mtime_ns))
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def load_cached(output: Path, sequence: Sequence, key: str) -> SequenceScore | None:
    """The cached score of ``sequence`` when its key still matches, else None."""
    path = output / CACHE_DIR / f"{sequence.name}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("key") != key:
        return None
    return SequenceScore.from_json(data)


def save_cached(output: Path, score: SequenceScore, key: str) -> None:
    """Store a sequence's score under ``output/.eval-cache/<sequence>.json`` (atomically)."""
    write_text_atomic(
        output / CACHE_DIR / f"{score.sequence}.json", json.dumps({"key": key, **score.to_json()})
    )


def score_benchmark_sequence(
    sequence: Sequence,
    predictions: Path,
    output: Path,
    bound_th: float = BOUNDARY_THRESHOLD,
    threads: int = 4,
) -> tuple[SequenceScore, bool]:
    """Score one sequence unless an up-to-date cached score exists; returns (score, was_cached)."""
    key = cache_key(sequence, predictions, bound_th)
    cached = load_cached(output, sequence, key)
    if cached is not None:
        return cached, True
    score = score_sequence(sequence, predictions, bound_th, threads)
    save_cached(output, score, key)
    return score, False


def collect_cached(
    benchmark: Benchmark, predictions: Path, output: Path, bound_th: float = BOUNDARY_THRESHOLD
) -> tuple[list[SequenceScore], list[str]]:
    """Up-to-date cached scores of the benchmark's sequences, and the names still missing.

    This is how the shards' work is merged: each shard caches its sequences, one process reads
    them all back.
    """
    scores, missing = [], []
    for sequence in benchmark.sequences:
        cached = load_cached(output, sequence, cache_key(sequence, predictions, bound_th))
        if cached is None:
            missing.append(sequence.name)
        else:
            scores.append(cached)
    return scores, missing


def summarize(scores: list[SequenceScore]) -> Results:
    """Global statistics over all objects, and each object's J and F means (official order)."""
    stats = {"J": [], "F": []}
    per_object = []
    for score in scores:
        for row, object_id in enumerate(score.object_ids):
            j_stats, f_stats = statistics(score.j[row]), statistics(score.f[row])
            stats["J"].append(j_stats)
            stats["F"].append(f_stats)
            per_object.append((f"{score.sequence}_{object_id}", j_stats.mean, f_stats.mean))

    def mean_of(measure: str, field: str) -> float:
        values = [getattr(s, field) for s in stats[measure]]
        return float(np.mean(values)) if values else math.nan

    j_mean, f_mean = mean_of("J", "mean"), mean_of("F", "mean")
    global_scores = {
        "J&F-Mean": (j_mean + f_mean) / 2.0,
        "J-Mean": j_mean,
        "J-Recall": mean_of("J", "recall"),
        "J-Decay": mean_of("J", "decay"),
        "F-Mean": f_mean,
        "F-Recall": mean_of("F", "recall"),
        "F-Decay": mean_of("F", "decay"),
    }
    return Results(global_scores, per_object)


def format_number(value: float) -> str:
    """As the official CSVs print numbers (pandas ``float_format="%.3f"``, NaN left empty)."""
    return "" if math.isnan(value) else f"{value:.3f}"


def write_results_csv(results: Results, output: Path, split: str) -> tuple[Path, Path]:
    """Write ``global_results-<split>.csv`` and ``per-sequence_results-<split>.csv``."""
    global_rows = [
        list(GLOBAL_COLUMNS),
        [format_number(results.global_scores[c]) for c in GLOBAL_COLUMNS],
    ]
    sequence_rows = [list(SEQUENCE_COLUMNS)] + [
        [name, format_number(j), format_number(f)] for name, j, f in results.per_object
    ]
    paths = (output / f"global_results-{split}.csv", output / f"per-sequence_results-{split}.csv")
    for path, rows in zip(paths, (global_rows, sequence_rows), strict=True):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        write_text_atomic(path, buffer.getvalue())
    return paths


def score_predictions(
    sequences: list[Sequence],
    predictions: Path,
    output: Path,
    bound_th: float = BOUNDARY_THRESHOLD,
    threads: int = 4,
    on_sequence: Callable[[SequenceScore, bool], None] | None = None,
) -> list[SequenceScore]:
    """Score each sequence or reuse its cached score; calls on_sequence(score, was_cached)."""
    scores = []
    for sequence in sequences:
        score, was_cached = score_benchmark_sequence(
            sequence, predictions, output, bound_th, threads
        )
        scores.append(score)
        if on_sequence is not None:
            on_sequence(score, was_cached)
    return scores
