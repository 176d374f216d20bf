"""J&F of a model on synthetic clips it never saw: the measure of issue 6's small model.

    python benchmarks/bench_synthetic.py                      # packaged seggpt-tiny
    python benchmarks/bench_synthetic.py --checkpoint runs/x/checkpoint.pt --seeds 8

Every clip goes the user's way (mp4 + first-frame PNG -> engine -> DAVIS PNGs -> the project's
J&F), from seeds far from any training stream (700001, 700002, ...). Beside the model it scores
two baselines on the same clips: copying the first mask to every frame, and one step of the
model with the true previous frame as its only prompt (mean IoU against the truth, with what
copying that previous mask scores): a model below its copy baseline has not learnt to follow
objects. With --tune N it also runs each clip with a prompt tuned for N steps on the true masks of
--tune-frames (in-context tuning, `seggpt-video tune`) added to the plain prompts.
Prints a table and writes benchmarks/results/bench_synthetic.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, print_table, write_json  # noqa: E402
from bench_accuracy import load_weights  # noqa: E402

from seggpt_video.engine import SegmenterOptions  # noqa: E402
from seggpt_video.evaluation.metrics import region_similarity  # noqa: E402
from seggpt_video.model import load_model  # noqa: E402
from seggpt_video.objects import ObjectPalette  # noqa: E402
from seggpt_video.predictor import SegGPTPredictor  # noqa: E402
from seggpt_video.runtime import tune_cpu_runtime  # noqa: E402
from seggpt_video.training.demo import (  # noqa: E402
    copy_first_mask,
    score_clip,
    segment_clip,
    write_synthetic_clip,
)
from seggpt_video.training.synthetic import make_clip  # noqa: E402
from seggpt_video.training.tuning import tune_prompt  # noqa: E402

FIRST_SEED = 700_001
HEIGHT, WIDTH, OBJECTS = 96, 128, 2  # the clips of the README's tables


def one_step(predictor: SegGPTPredictor, frames: np.ndarray, labels: np.ndarray) -> tuple:
    """Mean IoU of predicting frame t from frame t-1's true mask, and of copying that mask."""
    object_ids = sorted(int(i) for i in np.unique(labels[0]) if i)
    palette = ObjectPalette(object_ids)
    model_scores, copy_scores = [], []
    height, width = labels.shape[1:]
    for t in range(1, len(frames)):
        prompts = predictor.prepare_prompts([frames[t - 1]], [palette.paint(labels[t - 1])])
        painted = predictor.paint(prompts, predictor.prepare_images([frames[t]]))
        painted = torch.nn.functional.interpolate(painted, size=(height, width), mode="bilinear")
        predicted = palette.decode(painted, object_ids)[0].cpu().numpy()
        for k in object_ids:
            truth = labels[t] == k
            model_scores.append(float(region_similarity(truth, predicted == k)))
            copy_scores.append(float(region_similarity(truth, labels[t - 1] == k)))
    return float(np.mean(model_scores)), float(np.mean(copy_scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="seggpt-tiny")
    parser.add_argument("--checkpoint", type=Path, default=None, help=".safetensors or train .pt")
    parser.add_argument("--seeds", type=int, default=4, help="number of clips")
    parser.add_argument("--first-seed", type=int, default=FIRST_SEED)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--memory", type=int, default=8)
    parser.add_argument("--per-object", action="store_true", help="one pass per object")
    parser.add_argument("--tune", type=int, default=0, help="tuning steps (0: no tuning)")
    parser.add_argument("--tune-frames", default="0,5,10", help="frames whose masks tune")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    tune_frames = [int(i) for i in args.tune_frames.split(",")]

    tune_cpu_runtime()
    if args.checkpoint is not None:
        model, weights = load_weights(args.checkpoint), str(args.checkpoint)
    else:
        model, weights = load_model(args.model), args.model
    predictor = SegGPTPredictor(model, "cpu", torch.float32)
    options = SegmenterOptions(memory=args.memory, per_object=args.per_object)
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            clip = write_synthetic_clip(
                scratch / "clips", seed, args.frames, HEIGHT, WIDTH, OBJECTS
            )
            predicted = segment_clip(clip, predictor, scratch / "model", options, ("davis",))
            scores = score_clip(clip, predicted.parent)
            baseline = score_clip(clip, copy_first_mask(clip, scratch / "copy"))
            # The same clip's raw frames and ids (the mp4 is lossy) for one-step and tuning.
            frames, labels = make_clip(seed, args.frames, HEIGHT, WIDTH, OBJECTS)
            step_model, step_copy = one_step(predictor, frames, labels)
            row = {
                "seed": seed,
                "J&F": scores["J&F-Mean"],
                "J": scores["J-Mean"],
                "F": scores["F-Mean"],
                "copy first J&F": baseline["J&F-Mean"],
                "one-step IoU": step_model,
                "copy previous IoU": step_copy,
            }
            if args.tune:
                tuned, _ = tune_prompt(
                    predictor,
                    [frames[i] for i in tune_frames],
                    [labels[i] for i in tune_frames],
                    steps=args.tune,
                    progress=False,
                )
                tuned_options = SegmenterOptions(
                    memory=args.memory, extra_prompts=tuned.to_prompts()
                )
                folder = scratch / "tuned"
                segment_clip(clip, predictor, folder, tuned_options, ("davis",))
                row["tuned J&F"] = score_clip(clip, folder)["J&F-Mean"]
            rows.append(row)
    columns = list(rows[0])
    mean = {"seed": "mean", **{c: float(np.mean([r[c] for r in rows])) for c in columns[1:]}}
    print_table(f"{weights}, memory {args.memory}, {args.frames} frames", [*rows, mean], columns)
    print(f"{time.perf_counter() - start:.1f} s")
    path = write_json(
        "bench_synthetic",
        {
            "weights": weights,
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "machine": machine(),
            "clips": rows,
            "mean": mean,
        },
        args.json,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
