"""One ViT-L frame (one prompt), interleaved in one process, wall and CPU seconds, per CPU path.

    OMP_NUM_THREADS=1 python benchmarks/ab_frame.py --rounds 4 --threads 1

Cases: fp32 (bias as mask), bf16 with the bias as mask (this CPU's path), bf16 with the bias
folded into q and k (the AMX path), bf16 unpacked linears, and fp32 with dynamic int8 linears
(torch.ao.quantization.quantize_dynamic). The order rotates every round. With one thread the
process's CPU time (time.process_time) barely depends on what else runs on the machine, so it is
reported beside the wall time. Then agreement with fp32 of the bf16 and int8 painted outputs on
real DAVIS frames (random weights: only the size of the differences means something).
"""

import argparse
import copy
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine  # noqa: E402
from bench_model import inputs  # noqa: E402

from seggpt_video.model import build_model  # noqa: E402
from seggpt_video.predictor import SegGPTPredictor  # noqa: E402
from seggpt_video.runtime import choose_cpu_path, detect_cpu_features, tune_cpu_runtime  # noqa: E402

DAVIS = (
    Path(__file__).resolve().parents[2] / "shared/data/davis2016-val"
)  # ../shared beside the repo
parser = argparse.ArgumentParser()
parser.add_argument("--rounds", type=int, default=4)
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--clip", default="blackswan")
parser.add_argument("--frames", type=int, default=4)
parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results/ab_frame.json")
parser.add_argument("--cases", nargs="+", default=None, help="names to keep (default: all)")
args = parser.parse_args()

threads = tune_cpu_runtime(args.threads)
features = detect_cpu_features()
print("cpu:", features.to_dict(), "threads", threads, flush=True)
cpu = torch.device("cpu")
torch.manual_seed(0)
model = build_model("seggpt-vit-large").eval()


def predictor(dtype, attention, pack=True, int8=False):
    network = copy.deepcopy(model)
    if int8:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            network = torch.ao.quantization.quantize_dynamic(network, {nn.Linear}, torch.qint8)
        kinds = {type(m).__module__ + "." + type(m).__name__ for m in network.modules()}
        print("int8 model linears:", sorted(k for k in kinds if "Linear" in k), flush=True)
    p = SegGPTPredictor(network, cpu, dtype, pack=pack)
    p.model.set_attention(attention)
    return p


builders = {
    "fp32": lambda: predictor(torch.float32, "bias"),
    "bf16 bias as mask": lambda: predictor(torch.bfloat16, "bias"),
    "bf16 bias folded": lambda: predictor(torch.bfloat16, "folded"),
    "bf16 bias as mask, unpacked": lambda: predictor(torch.bfloat16, "bias", pack=False),
    "int8 linears (fp32 rest)": lambda: predictor(torch.float32, "bias", int8=True),
}
cases = {k: build() for k, build in builders.items() if args.cases is None or k in args.cases}
print("path chosen for this CPU:", choose_cpu_path(features, threads), flush=True)
data = {name: inputs(model.config.prompt_size, 1, 1, cpu, p.dtype) for name, p in cases.items()}
wall = {name: [] for name in cases}
cpu_s = {name: [] for name in cases}
names = list(cases)
for index in range(1 + args.rounds):
    order = names[index % len(names) :] + names[: index % len(names)]
    for name in order:
        p = cases[name]
        prompt, queries = data[name]
        p.forget_targets()
        w0, c0 = time.perf_counter(), time.process_time()
        p.paint(prompt, queries)
        w, c = time.perf_counter() - w0, time.process_time() - c0
        print(f"round {index}: {name}: wall {w:.2f} s, cpu {c:.2f} s", flush=True)
        if index > 0:
            wall[name].append(w)
            cpu_s[name].append(c)
summary = {}
for name in names:
    summary[name] = {
        "wall_median": round(statistics.median(wall[name]), 3),
        "cpu_median": round(statistics.median(cpu_s[name]), 3),
        "cpu_min": round(min(cpu_s[name]), 3),
    }
    print(
        f"{name}: wall median {summary[name]['wall_median']} s, cpu median"
        f" {summary[name]['cpu_median']} s (min {summary[name]['cpu_min']})",
        flush=True,
    )


def wins(a, b):
    return sum(x < y for x, y in zip(cpu_s[a], cpu_s[b]))


pairs = [
    ("bf16 bias as mask", "bf16 bias folded"),
    ("bf16 bias as mask", "bf16 bias as mask, unpacked"),
    ("int8 linears (fp32 rest)", "fp32"),
    ("bf16 bias as mask", "fp32"),
]
ratios = {}
for a, b in [(a, b) for a, b in pairs if a in cases and b in cases]:
    r = summary[b]["cpu_median"] / summary[a]["cpu_median"]
    ratios[f"{a} over {b}"] = {"cpu_ratio": round(r, 3), "a_faster_rounds_cpu": wins(a, b)}
    print(
        f"{a} vs {b}: {r:.2f}x by CPU time, faster in {wins(a, b)}/{args.rounds} rounds", flush=True
    )

frames = sorted((DAVIS / "JPEGImages/480p" / args.clip).glob("*.jpg"))[: args.frames + 1]
images = [np.array(Image.open(f).convert("RGB")) for f in frames]
mask = np.array(Image.open(DAVIS / "Annotations/480p" / args.clip / "00000.png"))
painted = np.repeat((mask > 127)[..., None].astype(np.uint8) * 255, 3, axis=2)
agreement = {}
for query in images[1:]:
    ref = cases["fp32"].predict([images[0]], [painted], query)
    for name in [n for n in ("bf16 bias as mask", "int8 linears (fp32 rest)") if n in cases]:
        out = cases[name].predict([images[0]], [painted], query)
        diff = np.abs(out - ref)
        ma, mb = ref.mean(axis=2) > 128, out.mean(axis=2) > 128
        union = (ma | mb).sum()
        row = agreement.setdefault(name, {"max": [], "mean": [], "iou": []})
        row["max"].append(round(float(diff.max()), 3))
        row["mean"].append(round(float(diff.mean()), 4))
        row["iou"].append(round(float((ma & mb).sum() / union) if union else 1.0, 4))
for name, row in agreement.items():
    print(
        f"{name} vs fp32 on {args.frames} frames of {args.clip}: max |diff| {row['max']} levels,"
        f" mean {row['mean']}, mask IoU (mean > 128) {row['iou']}",
        flush=True,
    )
args.json.write_text(
    json.dumps(
        {
            "command": " ".join(["python", *sys.argv]),
            "machine": machine(),
            "threads": threads,
            "wall": wall,
            "cpu": cpu_s,
            "summary": summary,
            "ratios": ratios,
            "agreement": agreement,
        },
        indent=2,
    )
    + "\n"
)
print("wrote", args.json)
