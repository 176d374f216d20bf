"""How fast `seggpt-video eval` scores DAVIS 2016 val from existing predictions, and what it gives.

Two predictions are scored, each from scratch (empty cache) and again from the cache:
- the ground truth itself (every number must be 1.0, decays 0.0);
- the previous frame's ground truth (frame 0 predicted as itself), a simple baseline.

Usage: python benchmarks/bench_eval.py [--data /work/shared/data/davis2016-val]
           [--threads 4] [--json benchmarks/results/bench_eval.json]
Prints a table and writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from seggpt_video.evaluation.datasets import open_benchmark
from seggpt_video.evaluation.scoring import score_predictions, summarize, write_results_csv


def previous_frame_predictions(benchmark, folder: Path) -> Path:
    """Link each frame's prediction to the previous frame's ground truth (frame 0: itself)."""
    for sequence in benchmark.sequences:
        target = folder / sequence.name
        target.mkdir(parents=True)
        masks = [sequence.annotated[i] for i in sorted(sequence.annotated)]
        for index, mask in enumerate(masks):
            (target / mask.name).symlink_to(masks[max(index - 1, 0)].resolve())
    return folder


def timed_score(benchmark, predictions: Path, output: Path, threads: int) -> tuple[float, dict]:
    start = time.perf_counter()
    scores = score_predictions(list(benchmark.sequences), predictions, output, threads=threads)
    results = summarize(scores)
    write_results_csv(results, output, benchmark.split)
    return time.perf_counter() - start, results.global_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/davis2016-val"))
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/bench_eval.json"))
    args = parser.parse_args()

    benchmark = open_benchmark(args.data)
    n_frames = sum(len(s.frames) for s in benchmark.sequences)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        cases = {
            "ground truth": benchmark.root / "Annotations" / "480p",
            "previous frame": previous_frame_predictions(benchmark, scratch / "previous"),
        }
        for name, predictions in cases.items():
            output = scratch / f"out-{len(rows)}"
            cold, scores = timed_score(benchmark, predictions, output, args.threads)
            cached, _ = timed_score(benchmark, predictions, output, args.threads)
            rows.append(
                {
                    "prediction": name,
                    "seconds_scoring": round(cold, 2),
                    "seconds_from_cache": round(cached, 2),
                    "ms_per_frame": round(1000 * cold / n_frames, 2),
                    **{key: round(value, 6) for key, value in scores.items()},
                }
            )

    table = Table(
        title=f"seggpt-video eval on {benchmark.kind} {benchmark.split}: "
        f"{len(benchmark.sequences)} sequences, {n_frames} frames, {args.threads} threads"
    )
    table.add_column("")
    for row in rows:
        table.add_column(row["prediction"], justify="right")
    for key in [k for k in rows[0] if k != "prediction"]:
        table.add_row(key, *(f"{row[key]:.3f}" for row in rows))
    Console().print(table)

    report = {
        "data": str(args.data),
        "sequences": len(benchmark.sequences),
        "frames": n_frames,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "machine": platform.platform(),
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
