"""Accuracy of each speed option against fp32 on the same real frames, beside its speed.

    python benchmarks/bench_accuracy.py         # the packaged seggpt-tiny on DAVIS 2016 val
    python benchmarks/bench_accuracy.py --checkpoint /work/runs/seggpt-tiny/checkpoint.pt

For every DAVIS 2016 val sequence, frame 0 with its ground-truth mask is the prompt and every
--stride-th frame a query. Each option paints the same queries; against the fp32 product path
it reports the max absolute difference of the painted output (0-255 levels), the mask IoU
(mean and worst frame; masks decoded as the engine decodes them) and the IoU with the ground
truth. Options: bf16 and fp16 (precision); bf16 with its linears unpacked (nn.Linear: GELU after
rounding to bf16, not fused); and the release's plain forward in fp32 (both streams for every
query, full decoder) to show that the product path's shared work changes nothing.
Without trained weights (no checkpoint yet) the model is random and the IoUs mean little.
Prints a table and writes benchmarks/results/bench_accuracy.json.
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

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, print_table, write_json  # noqa: E402

from seggpt_video.errors import UserError  # noqa: E402
from seggpt_video.model import SegGPT, build_model, load_model  # noqa: E402
from seggpt_video.objects import ObjectPalette  # noqa: E402
from seggpt_video.predictor import PromptTensors, SegGPTPredictor  # noqa: E402
from seggpt_video.runtime import tune_cpu_runtime  # noqa: E402

DAVIS = Path("/work/shared/data/davis2016-val")
OPTIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def plain_paint(predictor: SegGPTPredictor, prompts: PromptTensors, queries: torch.Tensor):
    """The release's forward, one query at a time: both streams, full decoder; 0-255 levels."""
    config = predictor.model.config
    painted = []
    masked = torch.zeros(1, config.num_patches, dtype=torch.bool)
    masked[:, config.num_patches // 2 :] = True
    with torch.inference_mode():
        for query in queries:
            imgs = torch.cat([prompts.images, query[None].expand(len(prompts), -1, -1, -1)], 2)
            tgts = torch.cat([prompts.masks, prompts.masks], 2)
            seg = torch.full((len(prompts),), predictor.seg_type)
            out = predictor.model(imgs, tgts, masked, seg, feature_ensemble=len(prompts) > 1)
            painted.append(out[:1, :, out.shape[2] // 2 :].float())
    return (torch.cat(painted) * predictor._std + predictor._mean).clamp(0, 255)


def load_weights(path: Path) -> SegGPT:
    """A model file, or a `seggpt-video train` resume checkpoint (weights under "model")."""
    if path.suffix == ".pt":
        state = torch.load(path, map_location="cpu", weights_only=True)
        if "model" in state and "preset" in state.get("config", {}):
            model = build_model(state["config"]["preset"])
            model.load_state_dict(state["model"])
            return model
    return load_model(path)


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-frame IoU of boolean masks (N, H, W); 1 where both are empty."""
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="seggpt-tiny")
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--stride", type=int, default=10, help="every Nth frame is a query")
    parser.add_argument("--sequences", type=int, default=None, help="only the first N")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    tune_cpu_runtime()
    if args.checkpoint is not None:
        model, weights = load_weights(args.checkpoint), str(args.checkpoint)
    else:
        try:
            model, weights = load_model(args.model), args.model
        except UserError:  # the packaged weights do not exist yet
            torch.manual_seed(0)
            model, weights = build_model(args.model), f"{args.model} (random weights)"
    palette = ObjectPalette([1])
    predictors = {
        name: SegGPTPredictor(copy.deepcopy(model), "cpu", dtype) for name, dtype in OPTIONS.items()
    }
    predictors["bf16, linears unpacked"] = SegGPTPredictor(
        copy.deepcopy(model), "cpu", torch.bfloat16, pack=False
    )
    names = (DAVIS / "ImageSets/2016/val.txt").read_text().split()[: args.sequences]

    painted = {name: [] for name in [*predictors, "plain fp32"]}
    seconds = {name: 0.0 for name in painted}
    truths = []
    for name in names:
        frames = sorted((DAVIS / "JPEGImages/480p" / name).glob("*.jpg"))
        first = np.array(Image.open(frames[0]))
        labels = np.array(Image.open(DAVIS / "Annotations/480p" / name / "00000.png")) > 0
        images = [np.array(Image.open(path)) for path in frames[args.stride :: args.stride]]
        for path in frames[args.stride :: args.stride]:
            truth = np.array(Image.open(DAVIS / "Annotations/480p" / name / f"{path.stem}.png"))
            truths.append(torch.from_numpy(truth > 0))
        for option, predictor in predictors.items():
            prompts = predictor.prepare_prompts([first], [palette.paint(labels.astype(np.uint8))])
            queries = predictor.prepare_images(images)
            start = time.perf_counter()
            painted[option].append(predictor.paint(prompts, queries))
            seconds[option] += time.perf_counter() - start
            if option == "fp32":
                start = time.perf_counter()
                painted["plain fp32"].append(plain_paint(predictor, prompts, queries))
                seconds["plain fp32"] += time.perf_counter() - start
    frames = len(truths)
    size = predictors["fp32"].size
    truth = torch.stack(
        [
            torch.nn.functional.interpolate(t[None, None].float(), (size, size), mode="nearest")[
                0, 0
            ]
            > 0.5
            for t in truths
        ]
    )
    reference = torch.cat(painted["fp32"])
    reference_mask = palette.decode(reference) > 0
    rows = []
    for option, parts in painted.items():
        output = torch.cat(parts)
        mask = palette.decode(output) > 0
        agreement = iou(mask, reference_mask)
        rows.append(
            {
                "option": option,
                "frames": frames,
                "frames_per_second": round(frames / seconds[option], 2),
                "max_abs_diff_vs_fp32": float(f"{(output - reference).abs().max().item():.4g}"),
                "mean_abs_diff_vs_fp32": float(f"{(output - reference).abs().mean().item():.4g}"),
                "mask_iou_vs_fp32_mean": round(agreement.mean().item(), 5),
                "mask_iou_vs_fp32_worst": round(agreement.min().item(), 5),
                "iou_vs_ground_truth": round(iou(mask, truth).mean().item(), 4),
            }
        )
    print_table(
        f"Speed options against fp32: {weights}, {len(names)} DAVIS 2016 val sequences",
        rows,
        list(rows[0]),
    )
    result = {
        "command": " ".join(["python", *sys.argv]),
        "machine": machine(),
        "weights": weights,
        "sequences": names,
        "rows": rows,
        "note": "output levels are 0-255; masks at the model's input size, decoded as the engine",
    }
    print("wrote", write_json("bench_accuracy", result, args.json))


if __name__ == "__main__":
    main()
