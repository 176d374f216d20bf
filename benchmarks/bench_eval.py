"""How long `seggpt-video eval` takes to score DAVIS 2016 val against vos-benchmark, same masks.

Each round runs both commands as fresh processes (start-up included, as a user runs them), in
alternating order: `seggpt-video eval DATA --benchmark davis2016 --predictions P -o OUT` with
OUT/.eval-cache removed first (a cached sequence is not scored again), and vos-benchmark's
`benchmark()` with 2 processes. The ratio is the median of ours over the median of theirs.
Then both results are compared: every per-sequence and global J and F at vos-benchmark's
printed precision (one decimal, in percent).

Without --predictions the masks are the ground truth shifted, grown or shrunk by a few pixels
per sequence (no model needed), written once to /tmp/eval-preds.

On a busy machine seconds move with the load; ratios taken within one run do not move as much.
`--baseline REV` times `eval` as it was at git revision REV too, in the same rounds (its
ratio beside ours: before and after in one run), and checks that its CSVs are byte for byte
ours; REV may also be a source folder laid out as the repository (an uncommitted experiment).
`--floor` times two references each round: `import torch` alone, and decoding every mask PNG
the scoring reads (read_labels_many, 4 threads) with no measuring: no PIL-based scorer of
these files, in a fresh process, can be faster than the second.

Usage: python benchmarks/bench_eval.py [--data /work/shared/data/davis2016-val]
           [--predictions DIR] [--rounds 5] [--baseline REV] [--floor]
           [--json benchmarks/results/bench_eval.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from _common import machine, print_table, write_json
from PIL import Image

from seggpt_video.evaluation.datasets import Benchmark, open_benchmark
from seggpt_video.evaluation.scoring import CACHE_DIR, SequenceScore, summarize
from seggpt_video.io.masks import read_mask

VOS_BENCHMARK = (
    "import sys; from vos_benchmark.benchmark import benchmark; "
    "benchmark([sys.argv[1]], [sys.argv[2]], num_processes=2, verbose=False)"
)
DECODE_ONLY = (
    "import sys; from pathlib import Path; "
    "from seggpt_video.evaluation.datasets import open_benchmark, read_labels_many; "
    "b = open_benchmark(Path(sys.argv[1]), 'davis2016'); "
    "paths = [p for s in b.sequences for i in sorted(s.annotated)[1:-1] "
    "for p in (s.annotated[i], Path(sys.argv[2]) / s.name / (s.frames[i].stem + '.png'))]; "
    "sum(1 for _ in read_labels_many(paths, 4))"
)
TORCH_IMPORT = "import torch"
REPO = Path(__file__).resolve().parent.parent


def _shift(masks: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The mask moved by (dy, dx) pixels; what leaves the frame is lost. masks: (H, W) bool."""
    moved = np.zeros_like(masks)
    height, width = masks.shape
    moved[max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = masks[
        max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
    ]
    return moved


def perturbed_predictions(benchmark: Benchmark, folder: Path) -> Path:
    """Ground truth shifted, grown or shrunk by a few pixels, as 0/255 PNGs (no model needed).

    Each sequence gets its own offset and growth (seeded by its name, so every run writes the
    same files); every frame adds a small jitter, and every 17th frame is left empty. 0/255
    like the DAVIS 2016 ground truth, so vos-benchmark sees the same object value in both.
    """
    for sequence in benchmark.sequences:
        rng = np.random.default_rng(zlib.crc32(sequence.name.encode()))
        dy, dx = (int(v) for v in rng.integers(-6, 7, 2))
        grow = int(rng.integers(-3, 4))
        target = folder / sequence.name
        target.mkdir(parents=True, exist_ok=True)
        for index in sorted(sequence.annotated):
            pred = read_mask(sequence.annotated[index]) > 0
            jitter_y, jitter_x = (int(v) for v in rng.integers(-2, 3, 2))
            pred = _shift(pred, dy + jitter_y, dx + jitter_x)
            for _ in range(abs(grow)):  # one pixel of growth (or shrinkage) per step
                near = [pred] + [_shift(pred, y, x) for y, x in ((1, 0), (-1, 0), (0, 1), (0, -1))]
                pred = np.logical_or.reduce(near) if grow > 0 else np.logical_and.reduce(near)
            if index % 17 == 16:
                pred[:] = False
            name = f"{sequence.frames[index].stem}.png"
            Image.fromarray(pred.astype(np.uint8) * 255).save(target / name)
    return folder


def run(command: list[str], env: dict | None = None) -> tuple[float, float]:
    """Wall-clock and CPU seconds (user + system, its worker processes too) of one command.

    CPU seconds move less than wall-clock ones when other work shares the cores.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def export_revision(revision: str, folder: Path) -> dict:
    """The repository at ``revision`` unpacked in folder, importable: the environment to run it.

    cli/ installs as seggpt_video.cli, so a link puts it there; PYTHONPATH puts the export
    before the editable install of the working tree.
    """
    folder.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", revision], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    (folder / "seggpt_video" / "cli").symlink_to(folder / "cli", target_is_directory=True)
    return {**os.environ, "PYTHONPATH": str(folder)}


def compare_with_vos_benchmark(
    output: Path, gt_root: Path, predictions: Path
) -> tuple[int, int, float]:
    """(values compared, values that differ as vos-benchmark prints them, largest difference).

    Ours at full precision from the score cache, theirs from an untimed in-process run; per
    object J and F and the global J, F and J&F, in percent as vos-benchmark reports them.
    """
    from vos_benchmark.benchmark import benchmark as vos_benchmark

    scores = [
        SequenceScore.from_json(json.loads(path.read_text()))
        for path in sorted((output / CACHE_DIR).glob("*.json"))
    ]
    results = summarize(scores)
    g = results.global_scores
    ours = {name: (100 * j, 100 * f) for name, j, f in results.per_object}
    ours["global"] = (100 * g["J-Mean"], 100 * g["F-Mean"], 100 * g["J&F-Mean"])
    jf, j, f, objects = vos_benchmark(
        [str(gt_root)], [str(predictions)], num_processes=2, verbose=False
    )
    theirs = {"global": (j[0], f[0], jf[0])}
    for sequence, (iou, boundary) in objects[0].items():
        # DAVIS 2016 masks are 0/255, so vos-benchmark's object is 255; ours is object 1.
        for number, value in enumerate(sorted(iou), start=1):
            theirs[f"{sequence}_{number}"] = (iou[value], boundary[value])
    if set(ours) != set(theirs):
        raise SystemExit(f"objects differ: ours {sorted(ours)}, vos-benchmark {sorted(theirs)}")
    pairs = [pair for name in ours for pair in zip(ours[name], theirs[name], strict=True)]
    differ = sum(f"{mine:.1f}" != f"{other:.1f}" for mine, other in pairs)
    return len(pairs), differ, max(abs(mine - other) for mine, other in pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/davis2016-val"))
    parser.add_argument("--predictions", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--baseline", default=None, help="git revision (or source folder) to time as well"
    )
    parser.add_argument("--floor", action="store_true", help="time torch import, decoding")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    benchmark = open_benchmark(args.data, "davis2016")
    n_frames = sum(len(s.annotated) for s in benchmark.sequences)
    predictions = args.predictions
    if predictions is None:
        predictions = Path("/tmp/eval-preds")
        if not all((predictions / s.name).is_dir() for s in benchmark.sequences):
            perturbed_predictions(benchmark, predictions)
    gt_root = args.data / "Annotations" / "480p"
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "eval-out"
        eval_args = ["eval", str(args.data), "--benchmark", "davis2016"]
        eval_args += ["--predictions", str(predictions), "-o"]
        ours = [str(bin_dir / "seggpt-video"), *eval_args, str(output)]
        theirs = [sys.executable, "-c", VOS_BENCHMARK, str(gt_root), str(predictions)]
        # name -> (command, environment, output folder whose score cache is emptied first)
        commands = {"ours": (ours, None, output), "vos-benchmark": (theirs, None, None)}
        if args.baseline:
            baseline_out = Path(scratch) / "baseline-out"
            if Path(args.baseline).is_dir():
                env = {**os.environ, "PYTHONPATH": str(Path(args.baseline).resolve())}
            else:
                env = export_revision(args.baseline, Path(scratch) / "baseline")
            command = [sys.executable, "-m", "seggpt_video.cli", *eval_args, str(baseline_out)]
            commands["baseline"] = (command, env, baseline_out)
        if args.floor:
            decode = [sys.executable, "-c", DECODE_ONLY, str(args.data), str(predictions)]
            commands["decode-only"] = (decode, None, None)
            commands["torch-import"] = ([sys.executable, "-c", TORCH_IMPORT], None, None)
        for name, (command, env, _) in commands.items():
            where = f" (PYTHONPATH={env['PYTHONPATH']}, {args.baseline})" if env else ""
            print(f"{name}:", " ".join(command) + where)
        rows = []
        names = list(commands)
        for round_index in range(args.rounds):
            times, cpu = {}, {}
            shift = round_index % len(names)  # each command goes first in turn
            order = names[shift:] + names[:shift]
            for who in order:
                command, env, out = commands[who]
                if out is not None:
                    shutil.rmtree(out / CACHE_DIR, ignore_errors=True)
                times[who], cpu[who] = run(command, env)
            row = {
                "round": round_index + 1,
                "first": order[0],
                "ours_s": round(times["ours"], 3),
                "vos_benchmark_s": round(times["vos-benchmark"], 3),
                "ratio": round(times["ours"] / times["vos-benchmark"], 3),
                "ours_cpu_s": round(cpu["ours"], 3),
                "vos_benchmark_cpu_s": round(cpu["vos-benchmark"], 3),
            }
            if "baseline" in times:
                row["baseline_s"] = round(times["baseline"], 3)
                row["baseline_ratio"] = round(times["baseline"] / times["vos-benchmark"], 3)
                row["baseline_cpu_s"] = round(cpu["baseline"], 3)
            if "decode-only" in times:
                row["decode_only_s"] = round(times["decode-only"], 3)
                row["torch_import_s"] = round(times["torch-import"], 3)
            rows.append(row)
            print(row, flush=True)
        compared, differ, largest = compare_with_vos_benchmark(output, gt_root, predictions)
        same_as_baseline = None
        if args.baseline:
            same_as_baseline = all(
                (output / name).read_bytes() == (baseline_out / name).read_bytes()
                for name in ("global_results-val.csv", "per-sequence_results-val.csv")
            )

    columns = ["round", "first", "ours_s", "vos_benchmark_s", "ratio"]
    columns += ["ours_cpu_s", "vos_benchmark_cpu_s"]
    columns += [c for c in ("baseline_s", "baseline_ratio", "baseline_cpu_s") if args.baseline]
    columns += [c for c in ("decode_only_s", "torch_import_s") if args.floor]
    print_table(
        f"DAVIS 2016 val, {len(benchmark.sequences)} sequences, {n_frames} frames: "
        "seconds per command (fresh process, empty cache)",
        rows,
        columns,
    )
    medians = {c: statistics.median(row[c] for row in rows) for c in columns[2:]}
    median_ours, median_vos = medians["ours_s"], medians["vos_benchmark_s"]
    print(
        f"median: ours {median_ours:.2f} s, vos-benchmark {median_vos:.2f} s, "
        f"ratio {median_ours / median_vos:.3f}"
    )
    if args.baseline:
        print(
            f"baseline {args.baseline}: median {medians['baseline_s']:.2f} s, ratio "
            f"{medians['baseline_s'] / median_vos:.3f}; CSVs byte for byte ours: {same_as_baseline}"
        )
        print(
            f"CPU seconds: ours {medians['ours_cpu_s']:.2f}, baseline "
            f"{medians['baseline_cpu_s']:.2f}, vos-benchmark {medians['vos_benchmark_cpu_s']:.2f}"
        )
    if args.floor:
        print(
            f"floor: decoding the masks alone {medians['decode_only_s']:.2f} s "
            f"({medians['decode_only_s'] / median_vos:.3f} of vos-benchmark), "
            f"import torch alone {medians['torch_import_s']:.2f} s"
        )
    print(
        f"agreement with vos-benchmark: {compared - differ}/{compared} J and F values equal as "
        f"it prints them (.1f, percent); largest difference {largest:.2e} points"
    )
    report = {
        "data": str(args.data),
        "predictions": str(predictions),
        "frames": n_frames,
        "commands": {name: command for name, (command, _, _) in commands.items()},
        "baseline_revision": args.baseline,
        "machine": machine(),
        "rounds": rows,
        "medians": medians,
        "median_ours_s": round(median_ours, 3),
        "median_vos_benchmark_s": round(median_vos, 3),
        "ratio": round(median_ours / median_vos, 3),
        "csvs_same_as_baseline": same_as_baseline,
        "values_compared": compared,
        "values_differing_as_printed": differ,
        "largest_difference_points": largest,
    }
    path = write_json("bench_eval", report, args.json)
    print(f"wrote {path}")
    if differ:
        raise SystemExit(f"{differ} value(s) differ from vos-benchmark's")
    if same_as_baseline is False:
        raise SystemExit(f"the CSVs differ from those of {args.baseline}")


if __name__ == "__main__":
    main()
