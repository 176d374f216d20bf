"""Edge-aware refinement (seggpt_video/refine.py): what it costs and what it buys.

    python benchmarks/bench_refine.py --speed [--device cpu] [--rounds 7] [--model-size 64]
    python benchmarks/bench_refine.py --grid --davis ../shared/data/davis2016-train-240p \\
        --resolution 240p --sequences bear,boat [--checkpoint FILE] [--radii 0.25,0.5,1] \\
        [--eps 1e-4,1e-3,1e-2] [--subsamples auto,1,2]

--speed: milliseconds per frame of the guided filter alone (``refine_scores``) and of the whole
decoding at frame size with and without it (``objects.decode_batch``: upsampling, soft scores,
filter, argmax), at 854x480 and 1920x1080, for one object and for three objects in one pass, on
--device; the median of --rounds calls after one warm-up, the machine's CPU features printed.
The scores are painted at --model-size (64: the packaged seggpt-tiny, 448: ViT-L), which sets
the filter's radius and subsample (RefineSettings.in_pixels).

--grid: each sequence of a DAVIS-layout folder is propagated ONCE by the engine with refinement
off (refinement changes only the frame-size output, never the prompt memory, so one propagation
serves every setting); each predicted frame's painting is then decoded with every (radius, eps,
subsample) of the grid and with none, and J and F are measured per frame and object
(``evaluation.metrics.frame_j_and_f``, the DAVIS boundary tolerance), first and last frames left
out as DAVIS does. Per setting: the mean over objects of each object's mean J and F, and J&F.
Refused on a ``val`` split: DAVIS 2016 val is the held-out test set, never used for choices.

Both print a table and write JSON to benchmarks/results/ (bench_refine_speed.json,
bench_refine_grid.json) or --json.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, print_table, synchronize, write_json  # noqa: E402

import seggpt_video.engine as engine  # noqa: E402
from seggpt_video.engine import Segmenter, SegmenterOptions  # noqa: E402
from seggpt_video.evaluation.datasets import open_benchmark  # noqa: E402
from seggpt_video.evaluation.metrics import DiskRows, boundary_radius, frame_j_and_f  # noqa: E402
from seggpt_video.io.masks import read_mask  # noqa: E402
from seggpt_video.objects import ObjectPalette, decode_batch  # noqa: E402
from seggpt_video.predictor import load_predictor, to_tensor_images  # noqa: E402
from seggpt_video.refine import DEFAULT_SETTINGS, RefineSettings, refine_scores  # noqa: E402
from seggpt_video.runtime import detect_cpu_features, resolve_device  # noqa: E402

SIZES = {"480p": (480, 854), "1080p": (1080, 1920)}


# --- speed ---------------------------------------------------------------------------------------


def painted_scene(objects: int, size: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """A painting (1, 3, S, S) in [0, 255] as the model gives it: discs in their palette colours."""
    generator = torch.Generator().manual_seed(seed)
    palette = ObjectPalette(list(range(1, objects + 1)))
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    labels = torch.zeros(size, size, dtype=torch.uint8)
    for object_id in palette.object_ids:
        cy, cx = torch.randint(size // 4, 3 * size // 4, (2,), generator=generator).tolist()
        radius = size // 6
        labels[(ys - cy) ** 2 + (xs - cx) ** 2 <= radius**2] = object_id
    painted = palette.paint_tensor(labels[None])
    noise = torch.randn(painted.shape, generator=generator) * 12  # the model's paint is not flat
    return (painted + noise).clamp(0, 255).to(device)


def frame_like(painted: torch.Tensor, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """A frame (1, 3, H, W) uint8 whose objects are the painting's shapes, with texture."""
    generator = torch.Generator().manual_seed(seed)
    up = torch.nn.functional.interpolate(painted.cpu(), size=size, mode="nearest")
    texture = torch.randn(up.shape, generator=generator) * 20
    return (0.6 * up + 40 + texture).clamp(0, 255).to(torch.uint8).to(painted.device)


def median_ms(call, device: torch.device, rounds: int) -> float:
    call()  # warm-up
    seconds = []
    for _ in range(rounds):
        synchronize(device)
        start = time.perf_counter()
        call()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return round(1000 * statistics.median(seconds), 2)


def speed_row(name: str, size: tuple[int, int], objects: int, args, device) -> dict:
    """One frame size and object count: the filter alone and the decoding around it, in ms."""
    ids = list(range(1, objects + 1))
    palette = ObjectPalette(ids)
    painted = painted_scene(objects, args.model_size, device)
    guide = frame_like(painted, size)
    scores = torch.rand(1, objects, *size, device=device)
    radius, subsample = DEFAULT_SETTINGS.in_pixels(*size, args.model_size)

    def decode(refine: RefineSettings | None, soft: bool = False):
        return lambda: decode_batch(
            [painted], [palette], ids, ids, size, refine=refine, guide=guide, soft=soft
        )

    def refine() -> torch.Tensor:
        return refine_scores(scores, guide, DEFAULT_SETTINGS, args.model_size)

    return {
        "frame": f"{name} {size[1]}x{size[0]}",
        "objects": objects,
        "radius_px": radius,
        "subsample": subsample,
        "filter_ms": median_ms(refine, device, args.rounds),
        "decode_none_ms": median_ms(decode(None), device, args.rounds),
        "decode_guided_ms": median_ms(decode(DEFAULT_SETTINGS), device, args.rounds),
        "decode_guided_soft_ms": median_ms(decode(DEFAULT_SETTINGS, True), device, args.rounds),
    }


def run_speed(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    rows = [
        speed_row(name, size, objects, args, device)
        for (name, size), objects in itertools.product(SIZES.items(), (1, 3))
    ]
    columns = list(rows[0])
    title = (
        f"Refinement per frame on {device} (threads {torch.get_num_threads()}), "
        f"model size {args.model_size}, {DEFAULT_SETTINGS}, median of {args.rounds}"
    )
    print_table(title, rows, columns)
    return {"device": str(device), "model_size": args.model_size, "rows": rows}


# --- grid ----------------------------------------------------------------------------------------


def parse_grid(args: argparse.Namespace) -> list[RefineSettings]:
    radii = [float(v) for v in args.radii.split(",")]
    eps = [float(v) for v in args.eps.split(",")]
    subsamples = [None if v == "auto" else int(v) for v in args.subsamples.split(",")]
    return [RefineSettings(r, e, s) for r, e, s in itertools.product(radii, eps, subsamples)]


def sequence_names(value: str | None) -> list[str] | None:
    """--sequences: 'a,b,c' or a file listing one name a line."""
    if value is None:
        return None
    path = Path(value)
    text = path.read_text() if path.is_file() else value.replace(",", "\n")
    return [name.strip() for name in text.splitlines() if name.strip()]


class DecodeRecorder:
    """Stands in for engine.decode_batch: records what each call decoded, then decodes it."""

    def __init__(self) -> None:
        self.last: tuple | None = None
        self._decode = engine.decode_batch

    def __call__(self, painted, palettes, present, object_ids, size, **options):
        self.last = (painted, palettes, present, object_ids, size, options.get("mode"))
        return self._decode(painted, palettes, present, object_ids, size, **options)


def run_grid(args: argparse.Namespace) -> dict:
    if args.split == "val":
        raise SystemExit(
            "--grid: not on a val split (DAVIS 2016 val is the held-out test set, never used "
            "for choices); use a train split"
        )
    grid = parse_grid(args)
    benchmark = open_benchmark(
        args.davis, args.benchmark, args.split, args.resolution, sequence_names(args.sequences)
    )
    predictor = load_predictor(args.model, args.checkpoint, args.device, args.dtype)
    options = SegmenterOptions(memory=args.memory, refine="none")
    recorder = DecodeRecorder()
    engine.decode_batch = recorder
    names = ["none", *(label(s) for s in grid)]
    # name -> per object (sequence_object) -> list of (J, F) per scored frame
    per_object: dict[str, dict[str, list[tuple[float, float]]]] = {n: {} for n in names}
    began = time.perf_counter()
    try:
        for sequence in benchmark.sequences:
            ground_truth = [sequence.annotated[i] for i in range(len(sequence.frames))]
            segmenter = Segmenter(predictor, options)
            frames = sequence.iter_images()
            last = len(sequence.frames) - 1
            disk_rows = None
            for result in segmenter.propagate(frames, sequence.prompts()):
                if result.index in (0, last) or result.index in sequence.given:
                    continue
                truth = read_mask(ground_truth[result.index])
                disk_rows = disk_rows or DiskRows(boundary_radius(*truth.shape))
                objects = range(1, int(max(truth.max(initial=0), result.labels.max())) + 1)
                painted, palettes, present, object_ids, size, mode = recorder.last
                guide = to_tensor_images([result.frame]).to(painted[0].device)
                outputs = {"none": result.labels}
                for settings in grid:
                    decoded = decode_batch(
                        painted, palettes, present, object_ids, size, mode=mode,
                        refine=settings, guide=guide,
                    )  # fmt: skip
                    outputs[label(settings)] = decoded.labels[0].cpu().numpy()
                for name, labels in outputs.items():
                    for object_id in objects:
                        key = f"{sequence.name}_{object_id}"
                        score = frame_j_and_f(truth == object_id, labels == object_id, disk_rows)
                        per_object[name].setdefault(key, []).append(score)
            print(f"{sequence.name}: {len(sequence.frames)} frames", flush=True)
    finally:
        engine.decode_batch = recorder._decode
    rows = []
    for name in names:
        scores = per_object[name]
        j = float(np.mean([np.mean([s[0] for s in v]) for v in scores.values()]))
        f = float(np.mean([np.mean([s[1] for s in v]) for v in scores.values()]))
        rows.append(
            {"refine": name, "J": round(j, 4), "F": round(f, 4), "J&F": round((j + f) / 2, 4)}
        )
    base = rows[0]["J&F"]
    for row in rows:
        row["J&F - none"] = round(row["J&F"] - base, 4)
    print_table(
        f"Refinement on {benchmark.kind} {args.split} {args.resolution}: "
        f"{len(benchmark.sequences)} sequences, model {predictor.name} at {predictor.size}",
        sorted(rows, key=lambda r: -r["J&F"]),
        ["refine", "J", "F", "J&F", "J&F - none"],
    )
    return {
        "dataset": str(args.davis),
        "split": args.split,
        "resolution": args.resolution,
        "sequences": [s.name for s in benchmark.sequences],
        "model": predictor.name,
        "model_size": predictor.size,
        "memory": args.memory,
        "seconds": round(time.perf_counter() - began, 1),
        "rows": rows,
    }


def label(settings: RefineSettings) -> str:
    subsample = "auto" if settings.subsample is None else settings.subsample
    return f"r={settings.radius:g} eps={settings.eps:g} s={subsample}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--speed", action="store_true")
    what.add_argument("--grid", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--model-size", type=int, default=64)
    parser.add_argument("--davis", type=Path)
    parser.add_argument("--benchmark", default="auto")
    parser.add_argument("--split", default="train")
    parser.add_argument("--resolution", default="480p")
    parser.add_argument("--sequences", default=None, help="a,b,c or a file of names")
    parser.add_argument("--model", default=None)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--memory", type=int, default=8)
    parser.add_argument("--radii", default="0.25,0.5,1", help="in pixels of the model's input")
    parser.add_argument("--eps", default="1e-4,1e-3,1e-2")
    parser.add_argument("--subsamples", default="auto", help="integers or auto")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.grid and args.davis is None:
        parser.error("--grid needs --davis")
    if args.threads:
        torch.set_num_threads(args.threads)
    features = detect_cpu_features()
    print(f"CPU features ({features.source}): {features.to_dict()}", flush=True)
    result = run_speed(args) if args.speed else run_grid(args)
    kind = "speed" if args.speed else "grid"
    record = {"command": " ".join(["python", *sys.argv]), "machine": machine(), **result}
    print("wrote", write_json(f"bench_refine_{kind}", record, args.json))


if __name__ == "__main__":
    main()
