"""Model throughput: frames per second, peak memory, FLOPs and roofline, against transformers.

    python benchmarks/bench_model.py                      # ViT-L, fp32 and bf16, vs transformers
    python benchmarks/bench_model.py --preset seggpt-tiny --batch 1 4 --prompts 1 3 --no-reference

Random weights (speed does not depend on them). Every case runs in interleaved rounds (one warm-up
round, then --repeats timed ones) so ours and the reference see the same machine load; the
machine's fp32/bf16 matmul peak (large GEMMs) is measured in the same run, before and after.
"Ours" is the product path, SegGPTPredictor.paint with the attention form that
runtime.choose_cpu_path picks for this CPU, its per-call target-stream cache cleared (as when the
prompt set changes every frame); "ours, prompts reused" keeps it (e.g. --memory 0);
"ours, query half per prompt" (--ablate, several prompts) turns off computing each query half once
per query, to measure what that sharing gains; "ours, bias as mask" and "ours, bias folded"
(--ablate, bf16/fp16; whichever is not this CPU's product form) force the attention form;
"ours, linears unpacked" (--ablate, bf16/fp16) keeps nn.Linear instead of packed weights.
"floor" (--floor) replays only the forward's matmuls, convolutions and attention (no bias, true
head size) on their recorded inputs: no exact implementation can be faster than that.
The reference is transformers' SegGptForImageSegmentation holding the same weights, same inputs.
Prints a table and writes benchmarks/results/bench_model[_<preset>].json.
"""

from __future__ import annotations

import argparse
import copy
import functools
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from unittest.mock import patch

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from _common import PeakMemory, machine, matmul_peak, print_table, timed, write_json  # noqa: E402

import seggpt_video.model.seggpt as seggpt_module  # noqa: E402
from seggpt_video.model import PRESETS, SegGPT  # noqa: E402
from seggpt_video.predictor import PromptTensors, SegGPTPredictor  # noqa: E402
from seggpt_video.runtime import (  # noqa: E402
    choose_cpu_path,
    detect_cpu_features,
    tune_cpu_runtime,
)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Case:
    """One configuration to time: a callable painting ``frames`` query frames."""

    name: str
    dtype: str
    batch: int
    prompts: int
    run: object
    flops: float
    seconds: list[float] = field(default_factory=list)
    peak_bytes: int = 0


def inputs(size: int, batch: int, prompts: int, device: torch.device, dtype: torch.dtype):
    """Random normalised prompt images, prompt masks and queries (content does not affect speed)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(prompts, 3, size, size, generator=generator)
    masks = torch.randn(prompts, 3, size, size, generator=generator)
    queries = torch.randn(batch, 3, size, size, generator=generator)
    prompt = PromptTensors(images.to(device, dtype), masks.to(device, dtype))
    return prompt, queries.to(device, dtype)


def count_flops(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def our_flops(config, batch: int, prompts: int, shared: bool = True) -> float:
    """FLOPs of one SegGPTPredictor._paint call, counted on the meta device (no compute).

    Meta tensors hold no values, so whether query halves can be shared is set, not detected.
    """
    with torch.device("meta"):
        predictor = SegGPTPredictor(SegGPT(config), device="meta")
    meta = torch.device("meta")
    prompt, queries = inputs(config.prompt_size, batch, prompts, meta, torch.float32)

    def split(x, prompts):
        if not shared or prompts == 1:
            return None
        prompt_half, query_half = x.split(x.shape[1] // 2, dim=1)
        return prompt_half, query_half[::prompts]

    with patch.object(seggpt_module, "split_shared", split):
        return count_flops(lambda: predictor._paint(prompt, queries))


def plain_flops(config, batch: int) -> float:
    """FLOPs of the release's full forward (both streams, full decoder), one prompt per query."""
    with torch.device("meta"):
        model = SegGPT(config)
        imgs = torch.empty(batch, 3, *config.image_size)
        masked = torch.zeros(1, config.num_patches, dtype=torch.bool)
        return count_flops(lambda: model(imgs, imgs, masked, torch.ones(batch)))


def our_case(
    model, device, dtype_name, batch, prompts, flops, variant: str = "", attention: str = "sdpa"
) -> Case:
    """variant: "" (the product path), "reuse" (prompt set cached), or an ablation: "unshared"
    (query half per prompt), "bias" (position bias always passed as the attention mask),
    "folded" (bias always folded into q and k), "unpacked" (nn.Linear, no packed weights).
    attention: the product's form (runtime.CpuPath.attention), unless the variant forces one."""
    dtype = DTYPES[dtype_name]
    predictor = SegGPTPredictor(copy.deepcopy(model), device, dtype, pack=variant != "unpacked")
    predictor.model.set_attention(variant if variant in ("bias", "folded") else attention)
    prompt, queries = inputs(model.config.prompt_size, batch, prompts, device, dtype)

    def run():
        if variant != "reuse":
            predictor.forget_targets()
        if variant != "unshared":
            return predictor.paint(prompt, queries)
        with patch.object(seggpt_module, "split_shared", lambda x, prompts: None):
            return predictor.paint(prompt, queries)

    names = {
        "": "ours",
        "reuse": "ours, prompts reused",
        "unshared": "ours, query half per prompt",
        "bias": "ours, bias as mask",
        "folded": "ours, bias folded",
        "unpacked": "ours, linears unpacked",
    }
    return Case(names[variant], dtype_name, batch, prompts, run, flops)


FLOOR_OPS = {  # as the dispatcher shows them under inference mode (composites not decomposed)
    torch.ops.aten.linear.default,
    torch.ops.aten.conv2d.default,
    torch.ops.aten.matmul.default,
    torch.ops.aten.scaled_dot_product_attention.default,
    torch.ops.mkldnn._linear_pointwise.default,  # the packed bf16 linears (model/packed.py)
}


class _RecordOps(TorchDispatchMode):
    """Keeps every matmul, convolution and fused attention call of a forward, with its inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FLOOR_OPS:
            self.calls.append((func, args, kwargs))
        return func(*args, **kwargs)


def floor_case(model, device, dtype_name, batch, prompts, flops) -> Case:
    """The product path's matmuls, convolutions and attention alone, replayed on their own inputs.

    Attention is replayed with no bias and the true head size (the cheapest exact attention
    there is), so its time is a floor: what the forward would take if every other operation
    (bias, norms, activations, copies) were free. Any implementation computing the same network
    pays at least this much.
    """
    dtype = DTYPES[dtype_name]
    predictor = SegGPTPredictor(copy.deepcopy(model), device, dtype)
    prompt, queries = inputs(model.config.prompt_size, batch, prompts, device, dtype)
    head_dim = model.config.head_dim
    recorder = _RecordOps()
    with torch.inference_mode(), recorder:
        predictor.paint(prompt, queries)
    calls = []
    for func, args, kwargs in recorder.calls:
        if func is torch.ops.aten.scaled_dot_product_attention.default:
            args = tuple(t[..., :head_dim].contiguous() for t in args[:3])
            kwargs = {"scale": head_dim**-0.5}
        calls.append((func, args, kwargs))

    @torch.inference_mode()
    def run():
        for func, args, kwargs in calls:
            func(*args, **kwargs)

    return Case("floor: matmuls + attention alone", dtype_name, batch, prompts, run, flops)


def reference_case(model, device, dtype_name, flops) -> Case:
    from oracle import oracle_from

    dtype = DTYPES[dtype_name]
    oracle = oracle_from(copy.deepcopy(model).float()).to(device, dtype)
    prompt, queries = inputs(model.config.prompt_size, 1, 1, device, dtype)
    masked = torch.zeros(1, model.config.num_patches, dtype=torch.bool, device=device)
    masked[:, model.config.num_patches // 2 :] = True

    @torch.inference_mode()
    def run():
        out = oracle(
            pixel_values=queries,
            prompt_pixel_values=prompt.images,
            prompt_masks=prompt.masks,
            bool_masked_pos=masked,
            embedding_type="instance",
        ).pred_masks
        return out[:, :, out.shape[2] // 2 :]

    return Case("transformers", dtype_name, 1, 1, run, flops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="seggpt-vit-large", choices=sorted(PRESETS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=sorted(DTYPES))
    parser.add_argument("--batch", nargs="+", type=int, default=[1])
    parser.add_argument("--prompts", nargs="+", type=int, default=[1])
    parser.add_argument("--reuse", action="store_true", help="also time a reused prompt set")
    parser.add_argument(
        "--ablate", action="store_true", help="also time without query sharing / folded bias"
    )
    parser.add_argument(
        "--floor", action="store_true", help="also time the matmuls and attention alone"
    )
    parser.add_argument("--no-reference", action="store_true", help="skip transformers")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="default: physical cores")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    device = torch.device(args.device)
    attention = "sdpa"  # the product's attention form: by dtype, or what this CPU's path picks
    if device.type == "cpu":
        tune_cpu_runtime(args.threads)
        features = detect_cpu_features()
        attention = choose_cpu_path(features).attention
        print(f"cpu: {', '.join(features.names())}; native bf16 {features.native_bf16}", flush=True)
    config = PRESETS[args.preset]
    torch.manual_seed(0)
    model = SegGPT(config).eval()
    peaks_before = {name: matmul_peak(DTYPES[name], device) for name in args.dtypes}

    ours = functools.partial(our_case, model, device, attention=attention)
    cases = []
    for dtype_name in args.dtypes:
        for batch in args.batch:
            for prompts in args.prompts:
                flops = our_flops(config, batch, prompts)
                cases.append(ours(dtype_name, batch, prompts, flops))
                if args.reuse:
                    cases.append(ours(dtype_name, batch, prompts, flops, "reuse"))
                if args.floor:
                    cases.append(floor_case(model, device, dtype_name, batch, prompts, flops))
                if args.ablate and dtype_name != "fp32":
                    product = "folded" if attention == "sdpa" else attention
                    for variant in [v for v in ("bias", "folded") if v != product] + ["unpacked"]:
                        cases.append(ours(dtype_name, batch, prompts, flops, variant))
                if args.ablate and prompts > 1:
                    unshared = our_flops(config, batch, prompts, shared=False)
                    cases.append(ours(dtype_name, batch, prompts, unshared, "unshared"))
        if not args.no_reference:
            cases.append(reference_case(model, device, dtype_name, plain_flops(config, 1)))

    outputs = {}
    for round_index in range(1 + args.repeats):  # a warm-up round, then the timed ones
        for case in cases:
            seconds = timed(lambda c=case: outputs.__setitem__(id(c), c.run()), device)
            if round_index > 0:
                case.seconds.append(seconds)
            print(
                f"round {round_index}: {case.name} {case.dtype} b{case.batch} p{case.prompts}"
                f" {seconds:.3f} s",
                flush=True,
            )
    # Memory in a round of its own: on the CPU it is read from the profiler, which slows a call
    # down (by 10% for a ViT-L frame), so that round is not timed.
    for case in cases:
        with PeakMemory(device) as memory:
            case.run()
        case.peak_bytes = memory.peak_bytes
    peaks_after = {name: matmul_peak(DTYPES[name], device) for name in args.dtypes}
    peaks = {name: max(peaks_before[name], peaks_after[name]) for name in args.dtypes}

    rows = []
    for case in cases:
        seconds = statistics.median(case.seconds)
        gflops = case.flops / seconds / 1e9
        rows.append(
            {
                "path": case.name,
                "dtype": case.dtype,
                "batch": case.batch,
                "prompts": case.prompts,
                "seconds_per_call": round(seconds, 4),
                "seconds_all": [round(s, 4) for s in case.seconds],
                "frames_per_second": round(case.batch / seconds, 4),
                "gflop_per_frame": round(case.flops / case.batch / 1e9, 2),
                "achieved_gflops": round(gflops, 1),
                "fraction_of_matmul_peak": round(gflops / peaks[case.dtype], 3),
                "peak_memory_mb": round(case.peak_bytes / 2**20, 1),
            }
        )
    comparisons = compare(cases, rows, outputs)
    print_table(
        f"{args.preset} on {device} (median of {args.repeats}; matmul peak GFLOP/s "
        + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items())
        + ")",
        rows,
        [
            "path",
            "dtype",
            "batch",
            "prompts",
            "frames_per_second",
            "seconds_per_call",
            "gflop_per_frame",
            "achieved_gflops",
            "fraction_of_matmul_peak",
            "peak_memory_mb",
        ],
    )
    for line in comparisons["lines"]:
        print(line)
    result = {
        "command": " ".join(["python", *sys.argv]),
        "preset": args.preset,
        "device": str(device),
        "machine": machine(),
        "matmul_peak_gflops": {"before": peaks_before, "after": peaks_after, "used": peaks},
        "rows": rows,
        "comparisons": comparisons["values"],
    }
    default = f"bench_model_{args.preset}" if args.preset != "seggpt-vit-large" else "bench_model"
    print("wrote", write_json(default, result, args.json))


def compare(cases: list[Case], rows: list[dict], outputs: dict) -> dict:
    """Speed ratios to transformers and output differences, batch 1 and one prompt."""
    lines, values = [], {}
    single = {
        (c.name, c.dtype): (c, r)
        for c, r in zip(cases, rows, strict=True)
        if c.batch == 1 and c.prompts == 1
    }
    for (name, dtype), (case, row) in single.items():
        if name != "ours":
            continue
        for ref_dtype in sorted({"fp32", dtype}):
            ref = single.get(("transformers", ref_dtype))
            if ref is None:
                continue
            ratio = row["frames_per_second"] / ref[1]["frames_per_second"]
            key = f"ours_{dtype}_over_transformers_{ref_dtype}"
            values[key] = round(ratio, 2)
            lines.append(f"ours {dtype} / transformers {ref_dtype}: {ratio:.2f}x frames per second")
        reference = single.get(("transformers", "fp32")) or single.get(("ours", "fp32"))
        if reference is not None and reference[0] is not case:
            diff = (outputs[id(case)].float() - denormalised(outputs[id(reference[0])])).abs().max()
            key = f"max_abs_diff_ours_{dtype}_vs_{reference[0].name}_fp32_pixels"
            values[key] = round(diff.item(), 5)
            lines.append(f"ours {dtype} vs {reference[0].name} fp32: max |diff| {diff:.3g} (0-255)")
    return {"lines": lines, "values": values}


def denormalised(output: torch.Tensor) -> torch.Tensor:
    """transformers returns normalised space; ours 0-255 pixels already (then unchanged)."""
    if output.min() >= 0 and output.max() > 1.5:
        return output.float()
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1) * 255
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1) * 255
    return (output.float().cpu() * std + mean).clamp(0, 255)


if __name__ == "__main__":
    main()
