"""Examples from outside the video, measured on DAVIS 2016: each sequence segmented from an
example taken from a *different* sequence (the nearest category), against its own first frame.

Every mode goes through the Python API (``VideoSegmenter.write``, the path `run` takes) and is
scored with eval's DAVIS measures (first and last frames not scored):

- ``own``: the sequence's own first-frame mask, as DAVIS's protocol does;
- ``example``: no mask of the sequence at all; the other sequence's first frame and its mask
  are the example (frame 0 is predicted like any other frame);
- ``example-semantic``: the same with the semantic seg type token (``--task semantic``).

    python benchmarks/bench_examples.py --val ../shared/data/davis2016-val \
        --train ../shared/data/davis2016-train-240p -o /tmp/bench-examples

DAVIS 2016 val is for reporting: nothing is chosen from these figures.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _common import machine, print_table, write_json

import seggpt_video
from seggpt_video.evaluation.datasets import Sequence, open_benchmark
from seggpt_video.evaluation.scoring import score_sequence, summarize
from seggpt_video.io.masks import read_mask
from seggpt_video.io.video import FrameFolder, read_image

# val sequence -> the sequence its example comes from: another val sequence of its category,
# else the nearest DAVIS 2016 train sequence ("train:" prefix).
PAIRS = {
    "blackswan": "train:mallard-water",
    "bmx-trees": "train:bmx-bumps",
    "breakdance": "dance-twirl",
    "camel": "cows",
    "car-roundabout": "car-shadow",
    "car-shadow": "car-roundabout",
    "cows": "camel",
    "dance-twirl": "breakdance",
    "dog": "libby",
    "drift-chicane": "drift-straight",
    "drift-straight": "drift-chicane",
    "goat": "dog",
    "horsejump-high": "train:horsejump-low",
    "kite-surf": "train:kite-walk",
    "libby": "dog",
    "motocross-jump": "train:motocross-bumps",
    "paragliding-launch": "train:paragliding",
    "parkour": "train:lucia",
    "scooter-black": "train:scooter-gray",
    "soapbox": "train:car-turn",
}
MODES = ("own", "example", "example-semantic")


def first_frame(sequence: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """A sequence's first frame (H, W, 3) and its ground-truth ids (H, W)."""
    return read_image(sequence.frames[0]), read_mask(sequence.annotated[0])


def measure(segmenters: dict, val, all_val, train, modes: list[str], output: Path) -> dict:
    """Each mode over the val sequences: global scores, per-sequence J&F, frames, seconds.

    segmenters: task ('instance', 'semantic') -> a VideoSegmenter.
    """
    results = {}
    for mode in modes:
        segmenter = segmenters["semantic" if mode.endswith("semantic") else "instance"]
        out = output / mode
        scores, began, frames = [], time.perf_counter(), 0
        for sequence in val.sequences:
            source = PAIRS[sequence.name]
            pool = train if source.startswith("train:") else all_val
            name = source.removeprefix("train:")
            video = FrameFolder(sequence.frames[0].parent, files=list(sequence.frames))
            # one run folder per sequence, as `run` makes it: <run>/<sequence>/<frame>.png
            run = out / sequence.name
            if mode == "own":
                report = segmenter.write(video, run, ["davis"], masks=sequence.prompts())
            else:
                example = first_frame(next(s for s in pool.sequences if s.name == name))
                report = segmenter.write(video, run, ["davis"], examples=[example])
            frames += report.frames - report.resumed
            scores.append(score_sequence(sequence, run))
        results[mode] = {
            "global": summarize(scores).global_scores,
            "per_sequence": {s.sequence: float((s.j.mean() + s.f.mean()) / 2) for s in scores},
            "frames_computed": frames,
            "seconds": round(time.perf_counter() - began, 1),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--val", type=Path, required=True, help="DAVIS 2016 val folder")
    parser.add_argument("--train", type=Path, required=True, help="DAVIS 2016 train folder")
    parser.add_argument("--train-resolution", default="240p")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--model", default=None)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--sequences", default=None, help="comma-separated val sequences")
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()

    chosen = args.sequences.split(",") if args.sequences else None
    val = open_benchmark(args.val, "davis2016", "val", "480p", chosen)
    all_val = open_benchmark(args.val, "davis2016", "val", "480p")
    train = open_benchmark(args.train, "davis2016", "train", args.train_resolution)
    segmenters = {
        task: seggpt_video.load(
            args.model, args.checkpoint, args.device, args.dtype, task=task, lazy=True
        )
        for task in ("instance", "semantic")
    }
    results = measure(segmenters, val, all_val, train, args.modes.split(","), args.output)
    rows = [
        {
            "mode": mode,
            "J&F": result["global"]["J&F-Mean"],
            "J": result["global"]["J-Mean"],
            "F": result["global"]["F-Mean"],
            "lost (J&F < 0.1)": sum(v < 0.1 for v in result["per_sequence"].values()),
        }
        for mode, result in results.items()
    ]
    print_table("DAVIS 2016 val: example from another sequence", rows, list(rows[0]))
    per_sequence = [
        {"sequence": name, "example from": PAIRS[name]}
        | {mode: results[mode]["per_sequence"][name] for mode in results}
        for name in (s.name for s in val.sequences)
    ]
    print_table("per sequence J&F", per_sequence, list(per_sequence[0]))
    path = write_json(
        "examples",
        {
            "machine": machine(),
            "pairs": PAIRS,
            "results": results,
            "args": {k: str(v) for k, v in vars(args).items()},
        },
        args.output / "bench_examples.json",
    )
    print(f"written {path}")
    print(json.dumps({mode: round(r["global"]["J&F-Mean"], 4) for mode, r in results.items()}))


if __name__ == "__main__":
    main()
