"""Where bf16's mask flips come from: bf16 with chosen steps kept in fp32, against fp32.

    python benchmarks/bench_bf16_flips.py                      # the packaged seggpt-tiny
    python benchmarks/bench_bf16_flips.py --offset 5 --keep attn+decoder norm

The frames and prompts of bench_accuracy.py (DAVIS 2016 val, frame 0 and its ground truth as the
prompt, every 10th frame from --offset a query). Each --keep variant is the bf16 product path
(attention form "bias", as load_predictor picks without AMX) with some steps in fp32, their
weights the unrounded fp32 ones: decoder (decoder_embed and decoder_pred), attn (q.k, position
bias, softmax, .v), norm (every LayerNorm), embed (patch embedding), mlp, qkvproj (attention's
linears); "weights" is fp32 arithmetic with every weight rounded to bf16 and back. Reported per
variant: pixels flipped at the model's input size (masks decoded as the release does) and mask
IoU with fp32 there and at frame size (upsampled and refined as `run` does), mean and worst
frame, and frames/s of the model call. Prints a table and writes
benchmarks/results/bench_bf16_flips.json.

    python benchmarks/bench_bf16_flips.py --through-run     # run's path, crops auto and off

--through-run compares what a user gets instead: each query segmented with `run`'s defaults
through the Python API (seggpt_video.load, then segment on the two frames [frame 0, query] with
frame 0's ground truth), --dtype bf16 against fp32, with --crops auto (run's default: small
objects on a window around them) and off; mask IoU at frame size, mean and worst frame.

    python benchmarks/bench_bf16_flips.py --recheck          # would an fp32 re-check pay?

--recheck asks whether bf16 with an fp32 second look would reach the worst-frame target: a frame
whose bf16 painting has more than R * (object area) pixels within T levels of the decision
(128) would be painted again in fp32 (its mask then equals fp32's). For a grid of T and R it
reports the share of frames re-painted and the worst frame-size IoU left, on the same queries;
and how far bf16 moves the pixels that flip (if a flip can move 100 levels, no margin catches
it cheaply).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, print_table, write_json  # noqa: E402
from bench_accuracy import DAVIS, iou  # noqa: E402

import seggpt_video  # noqa: E402
from seggpt_video.model import SegGPT, load_model  # noqa: E402
from seggpt_video.objects import ObjectPalette, decode_batch  # noqa: E402
from seggpt_video.predictor import SegGPTPredictor, to_tensor_images  # noqa: E402
from seggpt_video.refine import DEFAULT_SETTINGS  # noqa: E402
from seggpt_video.runtime import tune_cpu_runtime  # noqa: E402

STEPS = ("decoder", "attn", "norm", "embed", "mlp", "qkvproj", "weights")


class InFp32(nn.Module):
    """A module run in fp32 inside a bf16 model: input cast up, output cast back (or kept)."""

    def __init__(self, inner: nn.Module, keep_fp32_output: bool = False) -> None:
        super().__init__()
        self.inner, self.keep_fp32_output = inner.float(), keep_fp32_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(x.float())
        return y if self.keep_fp32_output else y.to(x.dtype)


def bf16_keeping(model: SegGPT, steps: set[str]) -> SegGPTPredictor:
    """The bf16 predictor with `steps` in fp32, from the fp32 `model`'s own (unrounded) weights."""
    if "weights" in steps:
        return SegGPTPredictor(copy.deepcopy(model).to(torch.bfloat16).float(), "cpu")
    predictor = SegGPTPredictor(copy.deepcopy(model), "cpu", torch.bfloat16)
    bf16 = predictor.model
    bf16.set_attention("bias")

    def keep(parent: nn.Module, name: str, path: str, fp32_output: bool = False) -> None:
        original = copy.deepcopy(model.get_submodule(path))
        setattr(parent, name, InFp32(original, fp32_output))

    if "decoder" in steps:
        keep(bf16, "decoder_embed", "decoder_embed", fp32_output=True)
        bf16.decoder_pred = copy.deepcopy(model.decoder_pred)  # fp32 in, fp32 out
    if "norm" in steps:
        keep(bf16, "norm", "norm")
    if "embed" in steps:
        keep(bf16, "patch_embed", "patch_embed")
    for index, block in enumerate(bf16.blocks):
        path = f"blocks.{index}"
        if "attn" in steps:
            source = model.blocks[index].attn
            block.attn.rel_pos_h = copy.deepcopy(source.rel_pos_h)
            block.attn.rel_pos_w = copy.deepcopy(source.rel_pos_w)
            attend = block.attn.attend
            block.attn.attend = lambda qkv, attend=attend: attend(qkv.float()).to(qkv.dtype)
        if "norm" in steps:
            keep(block, "norm1", f"{path}.norm1")
            keep(block, "norm2", f"{path}.norm2")
        if "mlp" in steps:
            keep(block, "mlp", f"{path}.mlp")
        if "qkvproj" in steps:
            keep(block.attn, "qkv", f"{path}.attn.qkv")
            keep(block.attn, "proj", f"{path}.attn.proj")
    return predictor


def queries_of(offset: int) -> list[tuple[str, np.ndarray, np.ndarray, list[np.ndarray]]]:
    """(sequence, frame 0, its ground truth (H, W) bool, query frames) of every val sequence:
    every 10th frame from ``offset``, as bench_accuracy.py takes them."""
    out = []
    for sequence in (DAVIS / "ImageSets/2016/val.txt").read_text().split():
        paths = sorted((DAVIS / "JPEGImages/480p" / sequence).glob("*.jpg"))
        first = np.array(Image.open(paths[0]))
        truth = np.array(Image.open(DAVIS / "Annotations/480p" / sequence / "00000.png")) > 0
        images = [np.array(Image.open(path)) for path in paths[offset::10]]
        out.append((sequence, first, truth, images))
    return out


def through_run(model: str, offset: int) -> list[dict]:
    """bf16 against fp32 as a user gets them: run's defaults, crops auto and off, one step from
    frame 0's ground truth for every query (no drift between the two)."""
    rows = []
    queries = queries_of(offset)
    for crops in ("auto", "off"):
        masks: dict[str, list[np.ndarray]] = {}
        seconds: dict[str, float] = {}
        for dtype in ("fp32", "bf16"):
            segmenter = seggpt_video.load(model, device="cpu", dtype=dtype, crops=crops)
            masks[dtype], start = [], time.perf_counter()
            for _, first, truth, images in queries:
                for image in images:
                    out = list(segmenter.segment([first, image], masks={0: truth.astype(np.uint8)}))
                    masks[dtype].append(out[1].labels > 0)
            seconds[dtype] = time.perf_counter() - start
        where = [
            f"{name}/{offset + 10 * k:05d}"
            for name, _, _, images in queries
            for k in range(len(images))
        ]
        ious = np.array(
            [
                float(iou(torch.from_numpy(a)[None], torch.from_numpy(b)[None])[0])
                for a, b in zip(masks["bf16"], masks["fp32"], strict=True)
            ]
        )
        worst = int(ious.argmin())
        rows.append(
            {
                "crops": crops,
                "queries": len(ious),
                "fp32_seconds": round(seconds["fp32"], 1),
                "bf16_seconds": round(seconds["bf16"], 1),
                "frame_size_iou_mean": round(float(ious.mean()), 5),
                "frame_size_iou_worst": round(float(ious.min()), 4),
                "worst_frame": where[worst],
                "frames_below_0.98": int((ious < 0.98).sum()),
            }
        )
    return rows


def paint_queries(predictors: dict[str, SegGPTPredictor], offset: int) -> tuple:
    """Every query of queries_of(offset) painted by each predictor from frame 0's ground truth:
    names of the frames, paintings (per sequence, (B, 3, S, S)), masks at frame size (per
    sequence, (B, H, W) bool, refined as run does) and seconds in the model, per predictor."""
    palette = ObjectPalette([1])
    painted = {name: [] for name in predictors}
    full = {name: [] for name in predictors}
    seconds = dict.fromkeys(predictors, 0.0)
    where: list[str] = []
    for sequence, first, truth, images in queries_of(offset):
        where += [f"{sequence}/{offset + 10 * k:05d}" for k in range(len(images))]
        for name, predictor in predictors.items():
            prompts = predictor.prepare_prompts([first], [palette.paint(truth.astype(np.uint8))])
            queries = predictor.prepare_images(images)
            start = time.perf_counter()
            out = predictor.paint(prompts, queries)
            seconds[name] += time.perf_counter() - start
            painted[name].append(out)
            decoded = decode_batch(
                [out], [palette], [1], [1], images[0].shape[:2],
                refine=DEFAULT_SETTINGS, guide=to_tensor_images(images),
            )  # fmt: skip
            full[name].append(decoded.labels > 0)
    return where, painted, full, seconds


def recheck(model_name: str, offset: int) -> list[dict]:
    """The fp32 re-check's grid (see --recheck): one row per (T levels, R share)."""
    tune_cpu_runtime()
    model = load_model(model_name)
    predictors = {
        "fp32": SegGPTPredictor(copy.deepcopy(model), "cpu"),
        "bf16": bf16_keeping(model, set()),
    }
    where, painted, full, _ = paint_queries(predictors, offset)
    whiteness = {name: torch.cat(parts).float().mean(dim=1) for name, parts in painted.items()}
    masks = {name: [m for part in parts for m in part] for name, parts in full.items()}
    bf16, fp32 = whiteness["bf16"], whiteness["fp32"]
    flipped = (bf16 > 128) != (fp32 > 128)
    moved = (bf16 - fp32).abs()[flipped]
    frame_iou = torch.stack(
        [iou(a[None], b[None])[0] for a, b in zip(masks["bf16"], masks["fp32"], strict=True)]
    )
    area = (bf16 > 128).flatten(1).sum(1).clamp(min=1)
    rows = []
    for levels in (2, 4, 8, 16):
        close = ((bf16 - 128).abs() < levels).flatten(1).sum(1)
        for share in (0.005, 0.01, 0.02, 0.05):
            again = close > share * area
            left = torch.where(again, torch.ones_like(frame_iou), frame_iou)
            rows.append(
                {
                    "within_levels": levels,
                    "of_object_area": share,
                    "frames_repainted_%": round(100 * again.float().mean().item(), 1),
                    "frame_size_iou_worst": round(left.min().item(), 4),
                    "worst_frame": where[int(left.argmin())],
                    "frames_below_0.98": int((left < 0.98).sum()),
                    "flips_moved_max_levels": round(moved.max().item(), 1),
                    "flips_moved_median_levels": round(moved.median().item(), 1),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="seggpt-tiny")
    parser.add_argument("--offset", type=int, default=10, help="first query frame")
    parser.add_argument(
        "--keep",
        nargs="*",
        default=[
            "decoder",
            "attn",
            "norm",
            "embed",
            "mlp",
            "qkvproj",
            "weights",
            "attn+norm+decoder+embed",
        ],  # fmt: skip
        help=f"variants: steps joined by + ({', '.join(STEPS)})",
    )
    parser.add_argument("--through-run", action="store_true", help="run's path (see above)")
    parser.add_argument("--recheck", action="store_true", help="an fp32 re-check (see above)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    other = {  # the tables that replace the --keep one: function, title, JSON name
        "through_run": (through_run, "bf16 against fp32 through run's path", "run"),
        "recheck": (recheck, "bf16 with an fp32 re-check, simulated", "recheck"),
    }
    for flag, (table, title, name) in other.items():
        if getattr(args, flag):
            rows = table(args.model, args.offset)
            print_table(f"{title}: {args.model}", rows, list(rows[0]))
            result = {
                "command": " ".join(["python", *sys.argv]),
                "machine": machine(),
                "rows": rows,
            }
            print("wrote", write_json(f"bench_bf16_flips_{name}", result, args.json))
            return
    for variant in args.keep:
        if unknown := set(variant.split("+")) - set(STEPS):
            parser.error(f"--keep {variant}: unknown step {sorted(unknown)[0]!r}")

    tune_cpu_runtime()
    model = load_model(args.model)
    predictors = {
        "fp32": SegGPTPredictor(copy.deepcopy(model), "cpu"),
        "bf16": bf16_keeping(model, set()),
    }
    for variant in args.keep:
        name = "fp32, weights rounded to bf16" if variant == "weights" else f"bf16, {variant} fp32"
        predictors[name] = bf16_keeping(model, set(variant.split("+")))
    palette = ObjectPalette([1])
    where, painted, full, seconds = paint_queries(predictors, args.offset)

    reference = palette.decode(torch.cat(painted["fp32"])) > 0
    reference_full = [mask for part in full["fp32"] for mask in part]
    rows = []
    for name in predictors:
        mask = palette.decode(torch.cat(painted[name])) > 0
        small = iou(mask, reference)
        flips = (mask != reference).flatten(1).sum(1)
        masks = [m for part in full[name] for m in part]
        frame_size = torch.stack([iou(a[None], b[None])[0] for a, b in zip(masks, reference_full)])
        worst = int(frame_size.argmin())
        rows.append(
            {
                "variant": name,
                "frames_per_second": round(len(where) / seconds[name], 1),
                "pixels_flipped": int(flips.sum()),
                "model_size_iou_mean": round(small.mean().item(), 5),
                "model_size_iou_worst": round(small.min().item(), 4),
                "frame_size_iou_mean": round(frame_size.mean().item(), 5),
                "frame_size_iou_worst": round(frame_size.min().item(), 4),
                "worst_frame": where[worst],
                "worst_frame_object_px_at_model_size": int(reference[worst].sum()),
                "frames_below_0.98": int((frame_size < 0.98).sum()),
            }
        )
    print_table(
        f"bf16 flips against fp32: {args.model}, {len(where)} query frames", rows, list(rows[0])
    )
    result = {"command": " ".join(["python", *sys.argv]), "machine": machine(), "rows": rows}
    print("wrote", write_json("bench_bf16_flips", result, args.json))


if __name__ == "__main__":
    main()
