"""Several objects in one clip: per-object J after its annotation, and how many are lost (issue 24).

    python benchmarks/bench_multi_object.py                                   # packaged model
    python benchmarks/bench_multi_object.py --checkpoint /tmp/pre-finetune.safetensors --json x.json

Two kinds of clip, segmented through the Python API (seggpt_video.load, then segment) with the
defaults of `run` (fp32, refine guided, memory per model unless --memory):
- composites of DAVIS 2016 *train* sequences (never val: val is how others judge us): the object
  of one sequence scaled by 0.3-0.6 and pasted over another frame by frame
  (seggpt_video.training.composites), a fixed seeded list of --pairs pairs, each in two variants:
  both objects annotated on frame 0 ('both'), the second entering at a third of the clip and
  annotated there ('late'). By default the pairs come from the 8 train sequences the DAVIS
  fine-tune held out (seggpt-tiny.json), so no composite's sequences were fine-tuned on.
- synthetic two-object clips (training.synthetic.make_clip, bench_synthetic's seeds 700001...),
  'both' and 'late' (the second object, visible from frame 0, annotated on frame 10 only: the
  issue's `--mask 0:a.png --mask 10:b.png`).
An object's J is its mean IoU over the frames after its annotation; J < 0.1 counts it lost.
Prints a table and writes benchmarks/results/bench_multi_object.json (or --json).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, print_table, write_json  # noqa: E402

import seggpt_video  # noqa: E402
from seggpt_video.errors import UserError  # noqa: E402
from seggpt_video.evaluation.metrics import region_similarity  # noqa: E402
from seggpt_video.training.composites import (  # noqa: E402
    VARIANTS,
    Composite,
    benchmark_pairs,
    make_composite,
    read_sequence,
)
from seggpt_video.training.synthetic import make_clip  # noqa: E402

DATA = Path("/work/shared/data/davis2016-train-240p")
HELD_OUT = [  # not in the packaged model's DAVIS fine-tune (seggpt-tiny.json, data.held_out)
    "bmx-bumps", "drift-turn", "hockey", "horsejump-low", "lucia", "mallard-fly", "soccerball",
    "swing",
]  # fmt: skip
SYNTHETIC_SEED, SYNTHETIC_LATE = 700_001, 10
LOST = 0.1


def train_sequences(root: Path, choice: str) -> list[str]:
    """Sequence names: 'held-out', 'all' (ImageSets/2016/train.txt) or 'a,b,...'; train only."""
    listing = root / "ImageSets" / "2016" / "train.txt"
    if not listing.is_file():
        raise UserError(f"{root}: no ImageSets/2016/train.txt (DAVIS 2016 train only, never val)")
    train = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    names = {"all": train, "held-out": HELD_OUT}.get(choice) or choice.split(",")
    unknown = sorted(set(names) - set(train))
    if unknown:
        raise UserError(f"--sequences: {', '.join(unknown)} not in {listing}")
    return names


def synthetic_clips(count: int, frames: int) -> list[Composite]:
    """Two-object synthetic clips (96x128), each as 'both' and 'late' (object 2 on frame 10)."""
    clips = []
    for seed in range(SYNTHETIC_SEED, SYNTHETIC_SEED + count):
        images, labels = make_clip(seed, frames, 96, 128, 2)
        late = {
            0: np.where(labels[0] == 1, 1, 0).astype(np.uint8),
            SYNTHETIC_LATE: np.where(labels[SYNTHETIC_LATE] == 2, 2, 0).astype(np.uint8),
        }
        for variant, given in (("both", {0: labels[0]}), ("late", late)):
            entry = SYNTHETIC_LATE if variant == "late" else 0
            clips.append(
                Composite(f"synthetic-{seed}-{variant}", images, labels, given, 1.0, entry)
            )
    return clips


def score(clip: Composite, predicted: np.ndarray) -> dict:
    """Per object: J over the frames after its annotation; predicted (T, H, W) uint8 ids."""
    row: dict = {"clip": clip.name}
    for object_id in (1, 2):
        annotated = min(f for f, ids in clip.annotations.items() if (ids == object_id).any())
        after = slice(annotated + 1, None)
        truth, guess = clip.labels[after] == object_id, predicted[after] == object_id
        row[f"J{object_id}"] = float(region_similarity(truth, guess).mean())
        area = (clip.labels[annotated] == object_id).mean()
        row[f"area{object_id} %"] = round(100 * float(area), 2)
    row["lost"] = sum(row[f"J{k}"] < LOST for k in (1, 2))
    return row


def summary(name: str, rows: list[dict]) -> dict:
    """Mean J over the objects of ``rows`` and how many were lost."""
    values = [row[f"J{k}"] for row in rows for k in (1, 2)]
    return {
        "clip": name,
        "J1": float(np.mean([r["J1"] for r in rows])),
        "J2": float(np.mean([r["J2"] for r in rows])),
        "mean J": float(np.mean(values)),
        "lost": int(sum(r["lost"] for r in rows)),
        "objects": len(values),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: packaged model")
    parser.add_argument("--memory", type=int, default=None, help="default: run's for the model")
    parser.add_argument("--pairs", type=int, default=12, help="composite pairs (x 2 variants)")
    parser.add_argument("--synthetic", type=int, default=4, help="synthetic clips (x 2 variants)")
    parser.add_argument("--frames", type=int, default=60, help="frames per composite at most")
    parser.add_argument("--data", type=Path, default=DATA, help="DAVIS 2016 train folder")
    parser.add_argument("--sequences", default="held-out", help="held-out, all, or a,b,...")
    parser.add_argument("--seed", type=int, default=0, help="of the pair list and placements")
    parser.add_argument("--crops", default="auto", help="auto, on or off (run's --crops)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    try:
        names = train_sequences(args.data, args.sequences)
        segmenter = seggpt_video.load(
            model=None if args.checkpoint else "seggpt-tiny",
            checkpoint=args.checkpoint,
            device="cpu",
            dtype="fp32",
            memory=args.memory,
            crops=args.crops,
        )
    except UserError as error:
        sys.exit(f"error: {error}")

    pairs = benchmark_pairs(names, args.pairs, args.seed)
    cache: dict = {}
    clips: list[Composite] = []
    for index, (base, pasted, scale) in enumerate(pairs):
        for name in (base, pasted):
            if name not in cache:
                cache[name] = read_sequence(args.data, name)
        for variant in VARIANTS:
            rng = np.random.default_rng([args.seed, index])  # both variants: the same placement
            clips.append(
                make_composite(cache[base], cache[pasted], scale, variant, rng, args.frames)
            )
    synthetic = synthetic_clips(args.synthetic, 40)

    rows, frames_done, start = [], 0, time.perf_counter()
    for kind, group in (("composites", clips), ("synthetic", synthetic)):
        for clip in group:
            out = segmenter.segment(list(clip.frames), masks=clip.annotations)
            predicted = np.stack([frame.labels for frame in out])
            frames_done += len(predicted)
            variant = "late" if clip.entry else "both"
            rows.append({**score(clip, predicted), "kind": kind, "variant": variant})
            rows[-1]["scale"] = clip.scale
    seconds = time.perf_counter() - start

    summaries = []
    for kind in ("composites", "synthetic"):
        for variant in (*VARIANTS, None):
            chosen = [r for r in rows if r["kind"] == kind and variant in (None, r["variant"])]
            if chosen:
                summaries.append(summary(f"{kind} {variant or 'all'}", chosen))
    weights = str(args.checkpoint or "seggpt-tiny (packaged)")
    title = (
        f"{weights}, memory {segmenter.options.memory}, crops {args.crops}, fp32, "
        f"{args.sequences} sequences"
    )
    print_table(title, rows, ["clip", "scale", "area1 %", "area2 %", "J1", "J2", "lost"])
    print_table("summary", summaries, ["clip", "J1", "J2", "mean J", "lost", "objects"])
    print(f"{frames_done} frames in {seconds:.1f} s ({frames_done / seconds:.1f} frames/s)")
    path = write_json(
        "bench_multi_object",
        {
            "weights": weights,
            "memory": segmenter.options.memory,
            "crops": args.crops,
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "pairs": [list(p) for p in pairs],
            "machine": machine(),
            "seconds": round(seconds, 1),
            "clips": rows,
            "summary": summaries,
        },
        args.json,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
