"""GPU check: precision, speed, attention forms, compile, memory and OOM back-off in one run.

    python benchmarks/gpu_check.py                      # CUDA, ViT-L, random weights (seed 0)
    python benchmarks/gpu_check.py --checkpoint seggpt_vit_large.pth --frames-dir FRAMES
    python benchmarks/gpu_check.py --device cpu --preset test-small   # CPU smoke run (tests)

Written for the day a GPU is lent: one command, one JSON, short tables. Sections:

- precision: fp16 and bf16 against fp32 on the same device and weights: max and mean difference
  of the painted output in 0-255 levels, and the IoU of the release's mask (mean RGB > 128); a
  second fp32 run gives the run-to-run noise floor. 1 and 9 prompts.
- throughput: seconds per frame of SegGPTPredictor.paint at 1 and 9 prompts, batch 1/4/8/16,
  a new prompt set every call (the target stream recomputed in full: a worst case, as a
  memory moving on by one frame reuses its other prompts' first block).
- crop_batching: a frame's full pass and its small objects' crop passes (3 prompts each, a
  new prompt set per job and call) painted by one SegGPTPredictor.paint_each call against one
  paint call per job, as the engine did before: seconds and the largest difference.
- attention: the folded form (position bias folded into q and k, fused SDPA unmasked) against
  the bias-as-mask form and the plain-softmax reference, per dtype and per SDPA backend.
- compile: torch.compile modes against eager (CPU: skipped with the reason unless
  --cpu-compile, which tries 'default' only).
- oom_backoff: a forced small memory budget; batch 16 must complete with max_queries lowered.
- end_to_end: `run`'s loop (segment_video: decode, engine, DAVIS PNG and overlay writers,
  decode and write in their own threads) on a synthetic 720p clip, memory 8.
- examples: the 720p clip segmented from an example from outside it (a still of its objects at
  another size and moment, no mask of the clip) against its own first frame: mean IoU with the
  truth and frames/s. With --davis-val and --davis-train (and real weights), also
  bench_examples.py's DAVIS 2016 val case: each sequence from another sequence's example.

Every case records its peak memory: torch.cuda.max_memory_allocated on CUDA, the profiler's
allocation events on the CPU (in one untimed round, as bench_model does). TF32 is off so fp32
is a true fp32 reference. Writes benchmarks/results/gpu_check[_cpu].json unless --json.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import math
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).parent))
from _common import PeakMemory, machine, print_table, timed, write_json  # noqa: E402

from seggpt_video.engine import Example, Segmenter, SegmenterOptions  # noqa: E402
from seggpt_video.io.video import open_video  # noqa: E402
from seggpt_video.io.writers import make_writers  # noqa: E402
from seggpt_video.model import SegGPT, build_model, load_model  # noqa: E402
from seggpt_video.pipeline import segment_video  # noqa: E402
from seggpt_video.predictor import PromptTensors, SegGPTPredictor  # noqa: E402
from seggpt_video.training.demo import write_video  # noqa: E402
from seggpt_video.training.synthetic import make_clip  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
BATCHES = (1, 4, 8, 16)
PROMPT_COUNTS = (1, 9)  # the first frame alone; the first frame and 8 remembered (memory 8)
PRECISION_QUERIES = 4
ATTENTION_BATCH = 4
COMPILE_BATCH = 8
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
END_TO_END_BATCHES = (1, 8)
BACKENDS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "math": SDPBackend.MATH,
}
# The CPU has a fused (flash) kernel and the math one only.
DEVICE_BACKENDS = {"cuda": ("flash", "efficient", "cudnn", "math"), "cpu": ("flash", "math")}
CPU_COMPILE_SKIPPED = (
    "CPU: too slow to compile here (test-small's 'default': 34 s with a cold inductor cache, "
    "9 s warm, on the 2-core VM with other processes busy) and no gain on ViT-L (README, "
    "Speed); --cpu-compile runs 'default'"
)
CPU_ONLY_DEFAULT = (
    "CPU: only 'default' is tried on the CPU (CUDA graphs and GEMM autotuning are GPU features)"
)
# The crop-batching case: the engine's default prompt count (an annotated frame and memory 2).
CROP_BATCH_PROMPTS = 3
CROP_BATCH_JOBS = (2, 4)
OOM_CPU_SKIPPED = (
    "CPU: torch.cuda.set_per_process_memory_fraction bounds only the CUDA caching allocator; "
    "there is no CPU memory budget to force an out-of-memory error with"
)


@dataclass
class Check:
    """Everything the sections share: device, weights (fp32, on the CPU), frames and settings."""

    device: torch.device
    speed_dtype: torch.dtype
    model: SegGPT
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB, the precision and speed inputs
    masks: np.ndarray  # (T, H, W, 3) uint8, white on black (one object: the release's painting)
    repeats: int
    quick: bool
    cpu_compile: bool
    # Prepared inputs by (kind, dtype, ...): resizing 720p frames costs more than test-small.
    prepared: dict = field(default_factory=dict)
    # The weights on the device, once per dtype: cases copy them there, not from the host.
    weights: dict = field(default_factory=dict)

    def predictor(self, dtype: torch.dtype, compile: str | None = None) -> SegGPTPredictor:
        """A fresh predictor on its own copy of the weights (empty caches, max_queries unset)."""
        if dtype not in self.weights:
            self.weights[dtype] = copy.deepcopy(self.model).to(self.device, dtype)
        weights = copy.deepcopy(self.weights[dtype])
        return SegGPTPredictor(weights, self.device, dtype, compile=compile)

    def fixed_inputs(
        self, predictor: SegGPTPredictor, prompts: int, queries: int
    ) -> tuple[PromptTensors, torch.Tensor]:
        """The same prompts and queries (in the predictor's dtype) for every compared case."""
        return self.prompt_sets(predictor, prompts, 1)[0], self.queries(predictor, prompts, queries)

    def prompt_sets(self, predictor: SegGPTPredictor, prompts: int, count: int) -> list:
        """``count`` prompt sets of the first ``prompts`` frames, (P, 3, S, S) each.

        Each set's masks are shifted one pixel further right, so no set hits the predictor's
        cache of target streams: every call pays for its prompts as a video with memory does.
        """
        key = ("prompts", predictor.dtype, prompts)
        if key not in self.prepared:
            indices = [i % len(self.frames) for i in range(prompts)]
            images, masks = list(self.frames[indices]), list(self.masks[indices])
            self.prepared[key] = predictor.prepare_prompts(images, masks)
        base = self.prepared[key]
        return [PromptTensors(base.images, base.masks.roll(i, dims=-1)) for i in range(count)]

    def queries(self, predictor: SegGPTPredictor, start: int, count: int) -> torch.Tensor:
        """``count`` frames from ``start`` on (the clip repeats if short), (Q, 3, S, S)."""
        key = ("queries", predictor.dtype, start, count)
        if key not in self.prepared:
            indices = [(start + i) % len(self.frames) for i in range(count)]
            self.prepared[key] = predictor.prepare_images(list(self.frames[indices]))
        return self.prepared[key]


def measure(
    call: Callable[[int], object], device: torch.device, repeats: int, warmups: int = 1
) -> dict:
    """Warm-up calls, ``repeats`` timed calls (median), then one untimed call for peak memory.

    call(i) is the i-th call overall, so each can take its own inputs.
    """
    warmup_seconds = [timed(lambda i=i: call(i), device) for i in range(warmups)]
    seconds = [timed(lambda i=i: call(warmups + i), device) for i in range(repeats)]
    with PeakMemory(device) as peak:
        call(warmups + repeats)
    return {
        "seconds": statistics.median(seconds),
        "seconds_all": [round(s, 6) for s in seconds],
        "warmup_seconds": [round(s, 6) for s in warmup_seconds],
        "peak_memory_bytes": int(peak.peak_bytes),
    }


def compare(reference: torch.Tensor, other: torch.Tensor) -> dict:
    """Two paintings (Q, 3, S, S) in 0-255: difference in levels and the release's mask IoU.

    The mask is mean RGB > 128 (the release's rule). test-small's random weights paint no pixel
    above 128, so there the release's IoU is 1 for want of a mask; the median split (threshold
    at each reference image's median, half the pixels in, most near it) still tells.
    """
    reference, other = reference.float().cpu(), other.float().cpu()
    difference = (other - reference).abs()
    ref_grey, grey = reference.mean(dim=1), other.mean(dim=1)
    ref_mask, mask = ref_grey > 128, grey > 128
    median = ref_grey.flatten(1).median(dim=1).values[:, None, None]
    return {
        "max_abs_diff_levels": difference.max().item(),
        "mean_abs_diff_levels": difference.mean().item(),
        "mask_iou_mean": iou(ref_mask, mask).mean().item(),
        "mask_iou_min": iou(ref_mask, mask).min().item(),
        "mask_pixels_changed": (ref_mask ^ mask).float().mean().item(),
        "mask_fraction_reference": ref_mask.float().mean().item(),
        "median_split_iou_min": iou(ref_grey > median, grey > median).min().item(),
    }


def iou(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Per-image IoU of two boolean masks (N, H, W): (N,); 1 where both are empty."""
    intersection = (first & second).flatten(1).sum(1).float()
    union = (first | second).flatten(1).sum(1).float()
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))


@contextmanager
def recorded(row: dict) -> Iterator[None]:
    """Run a case; a failure is recorded in ``row['error']`` (with torch's warnings) not raised.

    One case failing (a kernel the GPU lacks, a compile mode that breaks) must not lose the
    other cases of a run on a lent GPU.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except Exception as error:  # recorded, shown in the table and the JSON
            notes = [str(w.message).splitlines()[0] for w in caught]
            row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0]}"
            if notes:
                row["warnings"] = list(dict.fromkeys(notes))
    if row.get("error") is None and caught:
        row["warnings"] = list(dict.fromkeys(str(w.message).splitlines()[0] for w in caught))


def free_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


# -- sections ---------------------------------------------------------------------------------
def check_precision(check: Check) -> dict:
    """fp16, bf16 and a second fp32 run against fp32: same weights, frames and prompts."""
    queries = 2 if check.quick else PRECISION_QUERIES
    rows = []
    for prompts in PROMPT_COUNTS:
        painted = {}
        for name in ("fp32", "fp32 again", "fp16", "bf16"):
            predictor = check.predictor(DTYPES[name.split()[0]])
            painted[name] = predictor.paint(*check.fixed_inputs(predictor, prompts, queries))
            predictor = None  # its weights go before the next dtype's copy arrives
            free_memory(check.device)
        for name in ("fp32 again", "fp16", "bf16"):
            rows.append(
                {"prompts": prompts, "dtype": name, **compare(painted["fp32"], painted[name])}
            )
    return {"reference": "fp32 on the same device (TF32 off)", "queries": queries, "cases": rows}


def time_paint(
    check: Check, predictor: SegGPTPredictor, prompts: int, batch: int, warmups: int = 1
) -> dict:
    """Per-frame timing and peak memory of paint on ``batch`` queries, a new prompt set a call."""
    sets = check.prompt_sets(predictor, prompts, warmups + check.repeats + 1)
    queries = check.queries(predictor, prompts, batch)
    result = measure(
        lambda i: predictor.paint(sets[i], queries), check.device, check.repeats, warmups
    )
    seconds = result["seconds"]
    return {
        "seconds_per_frame": seconds / batch,
        "frames_per_second": batch / seconds,
        "seconds_per_call": seconds,
        "peak_memory_bytes": result["peak_memory_bytes"],
        "seconds_all": result["seconds_all"],
        "warmup_seconds": result["warmup_seconds"],
    }


def throughput_case(check: Check, prompts: int, batch: int) -> dict:
    row: dict = {"prompts": prompts, "batch": batch}
    with recorded(row):
        predictor = check.predictor(check.speed_dtype)
        row.update(time_paint(check, predictor, prompts, batch))
        row["max_queries"] = predictor.max_queries
    return row


def check_throughput(check: Check) -> dict:
    """Seconds per frame of paint at 1 and 9 prompts and batch 1, 4, 8, 16."""
    rows = []
    for prompts in PROMPT_COUNTS:
        for batch in BATCHES:
            rows.append(throughput_case(check, prompts, batch))
            free_memory(check.device)
    return {
        "dtype": dtype_name(check.speed_dtype),
        "attention_form": "default (sdpa: bias as mask in fp32, folded otherwise)",
        "prompt_sets": "a new one every call (target stream recomputed in full)",
        "cases": rows,
    }


def crop_batching_case(check: Check, jobs: int) -> dict:
    """``jobs`` prompt sets of 3 prompts, one query each: one grouped call against one call each."""
    predictor = check.predictor(check.speed_dtype)
    count = check.repeats + 2
    sets = check.prompt_sets(predictor, CROP_BATCH_PROMPTS, jobs * count * 2)
    queries = check.queries(predictor, CROP_BATCH_PROMPTS, jobs)
    grouped_sets, separate_sets = sets[: jobs * count], sets[jobs * count :]

    def work(i: int, chosen: list) -> list:
        return [(chosen[i * jobs + j], queries[j : j + 1]) for j in range(jobs)]

    grouped = measure(
        lambda i: predictor.paint_each(work(i, grouped_sets)), check.device, check.repeats
    )
    separate = measure(
        lambda i: [predictor.paint(*job) for job in work(i, separate_sets)],
        check.device,
        check.repeats,
    )
    predictor.forget_targets()
    together = predictor.paint_each(work(0, grouped_sets))
    predictor.forget_targets()
    apart = [predictor.paint(*job) for job in work(0, grouped_sets)]
    return {
        "jobs": jobs,
        "prompts": CROP_BATCH_PROMPTS,
        "seconds_grouped": grouped["seconds"],
        "seconds_separate": separate["seconds"],
        "speedup": separate["seconds"] / grouped["seconds"],
        "peak_memory_bytes": grouped["peak_memory_bytes"],
        "max_abs_diff_levels": compare(torch.cat(apart), torch.cat(together))[
            "max_abs_diff_levels"
        ],
    }


def check_crop_batching(check: Check) -> dict:
    """A full pass with one and with three crop passes (2 and 4 jobs)."""
    rows = []
    for jobs in CROP_BATCH_JOBS:
        row: dict = {}
        with recorded(row):
            row.update(crop_batching_case(check, jobs))
        rows.append(row)
        free_memory(check.device)
    return {"dtype": dtype_name(check.speed_dtype), "cases": rows}


def attention_case(
    check: Check, dtype: str, form: str, backend: str, expected: torch.Tensor
) -> dict:
    row: dict = {"dtype": dtype, "form": form, "backend": backend}
    with recorded(row):
        predictor = check.predictor(DTYPES[dtype])
        predictor.model.set_attention(form)
        kernels = BACKENDS.get(backend)
        with sdpa_kernel(kernels) if kernels is not None else nullcontext():
            row.update(time_paint(check, predictor, 1, ATTENTION_BATCH))
            painted = predictor.paint(*check.fixed_inputs(predictor, 1, ATTENTION_BATCH))
        difference = compare(expected, painted)
        row["max_abs_diff_vs_fp32_math"] = difference["max_abs_diff_levels"]
        row["mask_iou_vs_fp32_math"] = difference["mask_iou_mean"]
    return row


def check_attention(check: Check) -> dict:
    """Each attention form per dtype and SDPA backend, against fp32 plain softmax ("math")."""
    dtypes = ["fp32", "fp16", "bf16"] if check.device.type == "cuda" else ["fp32", "bf16"]
    backends = ["auto"] if check.quick else ["auto", *DEVICE_BACKENDS[check.device.type]]
    reference = check.predictor(torch.float32)
    reference.model.set_attention("math")
    expected = reference.paint(*check.fixed_inputs(reference, 1, ATTENTION_BATCH))
    reference = None
    rows = []
    for dtype in dtypes:
        cases = [(form, backend) for form in ("folded", "bias") for backend in backends]
        for form, backend in [*cases, ("math", "-")]:
            rows.append(attention_case(check, dtype, form, backend, expected))
            free_memory(check.device)
    return {
        "batch": ATTENTION_BATCH,
        "prompts": 1,
        "forms": {
            "folded": "bias folded into q and k, fused SDPA unmasked (Attention.attend_folded)",
            "bias": "the (L, L) position bias as SDPA's attn_mask",
            "math": "plain softmax(q k^T * scale + bias) v, no SDPA",
        },
        "switch": "SegGPT.set_attention(form); 'sdpa' (the default) picks bias in fp32, "
        "folded otherwise",
        "backend": "torch.nn.attention.sdpa_kernel restricted to one backend; auto: unrestricted",
        "cases": rows,
    }


def compile_case(check: Check, mode: str, eager: dict | None) -> dict:
    row: dict = {"mode": mode}
    with recorded(row):
        torch._dynamo.reset()
        eager_predictor = check.predictor(check.speed_dtype)
        inputs = check.fixed_inputs(eager_predictor, 1, COMPILE_BATCH)
        expected = eager_predictor.paint(*inputs)
        eager_predictor = None
        predictor = check.predictor(check.speed_dtype, compile=mode)
        # Three warm-up calls: in a CPU trial the second call still compiled; CUDA graphs are
        # recorded on a call after the first.
        row.update(time_paint(check, predictor, 1, COMPILE_BATCH, warmups=3))
        row["first_call_seconds"] = row["warmup_seconds"][0]
        painted = predictor.paint(*inputs)
        row["max_abs_diff_vs_eager"] = compare(expected, painted)["max_abs_diff_levels"]
        if eager is not None:
            row["speedup_vs_eager"] = eager["seconds_per_frame"] / row["seconds_per_frame"]
    torch._dynamo.reset()
    return row


def check_compile(check: Check, eager: dict | None) -> dict:
    """torch.compile modes at 1 prompt, batch 8: first call (compiling), then per frame."""
    rows = []
    for mode in COMPILE_MODES[:1] if check.quick else COMPILE_MODES:
        if check.device.type == "cpu" and not check.cpu_compile:
            rows.append({"mode": mode, "skipped": CPU_COMPILE_SKIPPED})
        elif check.device.type == "cpu" and mode != "default":
            rows.append({"mode": mode, "skipped": CPU_ONLY_DEFAULT})
        else:
            rows.append(compile_case(check, mode, eager))
            free_memory(check.device)
    return {
        "dtype": dtype_name(check.speed_dtype),
        "prompts": 1,
        "batch": COMPILE_BATCH,
        "eager": "the throughput case of 1 prompt, batch 8",
        "cases": rows,
    }


def oom_budget(
    reserved_bytes: int, peak_one: int, peak_full: int, total_bytes: int
) -> tuple[float, int]:
    """Memory fraction under which one query fits and a full batch does not.

    reserved_bytes: held by the allocator before the call (weights, inputs); peak_one and
    peak_full: peak bytes above that for batch 1 and the full batch. The budget above the
    reserved memory is their geometric mean (about batch 4 of 16), far from both ends.
    Returns (fraction of total_bytes, budget in bytes above reserved_bytes).
    """
    if not 0 < peak_one < peak_full:
        raise ValueError(f"need 0 < peak of one query ({peak_one}) < peak of all ({peak_full})")
    budget = int(math.sqrt(peak_one * peak_full))
    return (reserved_bytes + budget) / total_bytes, budget


def check_oom_backoff(check: Check) -> dict:
    """Batch 16 under a memory budget too small for it: paint must split it and remember."""
    if check.device.type != "cuda":
        return {"skipped": OOM_CPU_SKIPPED}
    batch = BATCHES[-1]
    row: dict = {"batch": batch, "prompts": 1, "dtype": dtype_name(check.speed_dtype)}
    with recorded(row):
        row.update(oom_case(check, batch))
    free_memory(check.device)
    return row


def oom_case(check: Check, batch: int) -> dict:
    predictor = check.predictor(check.speed_dtype)
    prompts, queries = check.fixed_inputs(predictor, 1, batch)
    predictor.paint(prompts, queries[:1])  # warm: target stream cached, kernels loaded
    with PeakMemory(check.device) as one:
        predictor.paint(prompts, queries[:1])
    with PeakMemory(check.device) as full:
        expected = predictor.paint(prompts, queries)
    if predictor.max_queries is not None:
        raise RuntimeError(f"batch {batch} ran out of memory with no budget set")
    free_memory(check.device)
    reserved = torch.cuda.memory_reserved(check.device)
    total = torch.cuda.get_device_properties(check.device).total_memory
    fraction, budget = oom_budget(reserved, one.peak_bytes, full.peak_bytes, total)
    torch.cuda.set_per_process_memory_fraction(fraction, check.device)
    try:
        with PeakMemory(check.device) as bounded:
            painted = predictor.paint(prompts, queries)
        seconds = timed(lambda: predictor.paint(prompts, queries), check.device)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, check.device)
    return {
        "peak_one_bytes": one.peak_bytes,
        "peak_full_bytes": full.peak_bytes,
        "reserved_bytes": reserved,
        "budget_bytes": budget,
        "memory_fraction": fraction,
        "peak_memory_bytes": bounded.peak_bytes,
        "seconds_bounded_call": seconds,
        "completed_queries": painted.shape[0],
        "max_queries": predictor.max_queries,
        "max_abs_diff_vs_unbounded": compare(expected, painted)["max_abs_diff_levels"],
        "passed": painted.shape[0] == batch and (predictor.max_queries or batch) < batch,
    }


def check_end_to_end(check: Check, clip: Path, labels: np.ndarray, scratch: Path) -> dict:
    """`run`'s one loop on the 720p clip: frames/s with decode and write overlapped."""
    rows = []
    object_ids = sorted(int(i) for i in np.unique(labels) if i)
    for batch in END_TO_END_BATCHES:
        row: dict = {"batch_size": batch, "memory": 8}
        with recorded(row):
            options = SegmenterOptions(memory=8, batch_size=batch)
            segmenter = Segmenter(check.predictor(check.speed_dtype), options)
            with open_video(clip) as video:
                out = scratch / f"out_batch{batch}"
                writers = make_writers(["davis", "overlay"], out, video.info, object_ids)
                report = segment_video(video, {0: labels}, segmenter, writers)
            seconds = dict(report.seconds)
            row.update(
                frames=report.frames,
                frames_per_second=report.frames / seconds["total"],
                seconds=seconds,
            )
        free_memory(check.device)
        rows.append(row)
    with open_video(clip) as video:
        info = video.info
    return {
        "clip": {
            "source": "synthetic (training.synthetic.make_clip), H.264 yuv444p via PyAV",
            "size": f"{info.width}x{info.height}",
            "frames": info.num_frames,
            "objects": len(object_ids),
        },
        "dtype": dtype_name(check.speed_dtype),
        "writers": ["davis", "overlay"],
        "cases": rows,
    }


def check_examples(check: Check, frames: np.ndarray, labels: np.ndarray, seed: int) -> dict:
    """The clip from its own first frame, then from an example of its objects alone."""
    stills, still_labels = make_clip(seed, 40, height=360, width=640, num_objects=2)
    example = Example(stills[30], still_labels[30])
    object_ids = sorted(int(i) for i in np.unique(labels) if i)
    rows = []
    for mode in ("own first frame", "example only"):
        row: dict = {"mode": mode, "memory": 8}
        with recorded(row):
            segmenter = Segmenter(check.predictor(check.speed_dtype), SegmenterOptions(memory=8))
            annotations = {0: labels[0]} if mode == "own first frame" else {}
            examples = [example] if mode == "example only" else None
            began = time.perf_counter()
            ious = []
            for result in segmenter.propagate(iter(frames), annotations, examples=examples):
                if result.index == 0:
                    continue
                truth = labels[result.index]
                for object_id in object_ids:
                    found, true = result.labels == object_id, truth == object_id
                    ious.append((found & true).sum() / max((found | true).sum(), 1))
            seconds = time.perf_counter() - began
            row.update(
                mean_iou=float(np.mean(ious)) if ious else math.nan,
                frames_per_second=len(frames) / seconds,
            )
        free_memory(check.device)
        rows.append(row)
    return {
        "inputs": "the end_to_end 720p clip; example: make_clip(seed) at 640x360, frame 30",
        "cases": rows,
    }


def check_davis_examples(args: argparse.Namespace) -> dict:
    """bench_examples.py's DAVIS 2016 val case with these weights (needs --checkpoint)."""
    import bench_examples

    import seggpt_video
    from seggpt_video.evaluation.datasets import open_benchmark

    val = open_benchmark(args.davis_val, "davis2016", "val", "480p")
    train = open_benchmark(args.davis_train, "davis2016", "train", "240p")
    segmenters = {
        task: seggpt_video.load(
            checkpoint=args.checkpoint, device=args.device, dtype=args.dtype, task=task, lazy=True
        )
        for task in ("instance", "semantic")
    }
    with tempfile.TemporaryDirectory() as scratch:
        results = bench_examples.measure(
            segmenters, val, val, train, list(bench_examples.MODES), Path(scratch)
        )
    return {
        "cases": [
            {"mode": mode, **{k: r["global"][k] for k in ("J&F-Mean", "J-Mean", "F-Mean")}}
            for mode, r in results.items()
        ],
        "per_sequence": {mode: r["per_sequence"] for mode, r in results.items()},
    }


# -- machine, inputs, report ------------------------------------------------------------------
def gpu_info(device: torch.device) -> dict | None:
    """Name, memory, compute capability, driver and CUDA/cuDNN versions; None off CUDA."""
    if device.type != "cuda":
        return None
    properties = torch.cuda.get_device_properties(device)
    try:
        driver = (
            subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            .stdout.split("\n")[0]
            .strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        driver = None
    return {
        "name": properties.name,
        "memory_bytes": properties.total_memory,
        "capability": f"{properties.major}.{properties.minor}",
        "multiprocessors": properties.multi_processor_count,
        "driver": driver,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }


def dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, value in DTYPES.items() if value == dtype)


def read_frames(folder: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` frames of a folder or video, each with a centred rectangle as mask."""
    with open_video(folder) as video:
        images = np.stack([frame for _, frame in itertools.islice(video.iter_frames(), count)])
    masks = np.zeros_like(images)
    height, width = images.shape[1:3]
    masks[:, height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 255
    return images, masks


def clip_length(args: argparse.Namespace, small: bool) -> int:
    """Frames of the 720p clip: 48 for a GPU run, fewer at test size (rendering costs there)."""
    if args.frames is not None:
        return args.frames
    return 4 if small else 16 if args.quick else 48


# Per section: table title, then (column, key in a case row); the note column is added.
TABLES = {
    "precision": (
        "precision against fp32 (0-255 levels; IoU of the release's mask, mean RGB > 128)",
        [
            ("prompts", "prompts"),
            ("dtype", "dtype"),
            ("max diff", "max_abs_diff_levels"),
            ("mean diff", "mean_abs_diff_levels"),
            ("IoU mean", "mask_iou_mean"),
            ("IoU min", "mask_iou_min"),
            ("fp32 mask area", "mask_fraction_reference"),
            ("median-split IoU min", "median_split_iou_min"),
        ],
    ),
    "throughput": (
        "paint speed, a new prompt set every call",
        [
            ("prompts", "prompts"),
            ("batch", "batch"),
            ("s/frame", "seconds_per_frame"),
            ("frames/s", "frames_per_second"),
            ("peak MB", "peak_memory_bytes"),
            ("max_queries", "max_queries"),
        ],
    ),
    "crop_batching": (
        f"full and crop passes in one call, {CROP_BATCH_PROMPTS} prompts a job, a query each",
        [
            ("jobs", "jobs"),
            ("grouped s", "seconds_grouped"),
            ("separate s", "seconds_separate"),
            ("speedup", "speedup"),
            ("peak MB", "peak_memory_bytes"),
            ("max diff", "max_abs_diff_levels"),
        ],
    ),
    "attention": (
        f"attention forms, 1 prompt, batch {ATTENTION_BATCH}",
        [
            ("dtype", "dtype"),
            ("form", "form"),
            ("backend", "backend"),
            ("s/frame", "seconds_per_frame"),
            ("peak MB", "peak_memory_bytes"),
            ("diff vs fp32 math", "max_abs_diff_vs_fp32_math"),
        ],
    ),
    "compile": (
        f"torch.compile, 1 prompt, batch {COMPILE_BATCH}",
        [
            ("mode", "mode"),
            ("first call s", "first_call_seconds"),
            ("s/frame", "seconds_per_frame"),
            ("speed-up", "speedup_vs_eager"),
            ("diff vs eager", "max_abs_diff_vs_eager"),
            ("peak MB", "peak_memory_bytes"),
        ],
    ),
    "oom_backoff": (
        "out-of-memory back-off: batch 16 under a forced budget",
        [
            ("passed", "passed"),
            ("max_queries", "max_queries"),
            ("budget MB", "budget_bytes"),
            ("peak MB", "peak_memory_bytes"),
        ],
    ),
    "end_to_end": (
        "end to end (segment_video, memory 8, DAVIS PNGs + overlay mp4)",
        [
            ("batch", "batch_size"),
            ("frames", "frames"),
            ("frames/s", "frames_per_second"),
            ("total s", "total"),
            ("decode s", "decode"),
            ("model+pre/post s", "model_and_pre_post"),
            ("write s", "write"),
        ],
    ),
    "examples": (
        "an example from outside the clip against its own first frame (memory 8)",
        [("mode", "mode"), ("mean IoU", "mean_iou"), ("frames/s", "frames_per_second")],
    ),
    "davis_examples": (
        "DAVIS 2016 val: each sequence from another sequence's example (bench_examples.py)",
        [("mode", "mode"), ("J&F", "J&F-Mean"), ("J", "J-Mean"), ("F", "F-Mean")],
    ),
}


def summary_tables(result: dict) -> None:
    """One short table per section; a failed or skipped case shows why in its note."""
    for section, (title, columns) in TABLES.items():
        if section not in result:
            continue  # a section this run did not ask for
        data = result[section]
        details = [data["dtype"]] if "dtype" in data else []
        if "clip" in data:
            details.append(f"{data['clip']['size']}, {data['clip']['frames']} frames")
        rows = []
        for case in data.get("cases", [data]):
            flat = {**case, **case.get("seconds", {})}
            row = {label: cell(key, flat.get(key)) for label, key in columns}
            row["note"] = (flat.get("error") or flat.get("skipped") or "")[:80] or None
            rows.append(row)
        labels = [label for label, _ in columns] + ["note"]
        print_table(", ".join([title, *details]), rows, labels)


def cell(key: str, value: object) -> object:
    """Bytes as MB, everything else as it is."""
    if key.endswith("bytes") and isinstance(value, int):
        return value / 2**20
    return value


def run_section(name: str, run: Callable[[], dict]) -> dict:
    """One section; if it fails as a whole it is recorded and the next one still runs."""
    clock = time.perf_counter()
    try:
        section = run()
    except Exception as error:
        traceback.print_exc()
        section = {"error": f"{type(error).__name__}: {str(error).splitlines()[0]}"}
    section["section_seconds"] = round(time.perf_counter() - clock, 2)
    print(f"{name}: {section['section_seconds']} s", file=sys.stderr)
    return section


def main(argv: list[str] | None = None) -> dict:
    """Run every section and write the JSON; returns what was written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--preset", default="seggpt-vit-large", help="ignored with --checkpoint")
    parser.add_argument("--checkpoint", type=Path, default=None, help="real weights (any format)")
    parser.add_argument("--seed", type=int, default=0, help="of the random weights and the clip")
    parser.add_argument(
        "--dtype",
        choices=["auto", *DTYPES],
        default="auto",
        help="for speed cases; auto: fp16 on CUDA, fp32 on the CPU",
    )
    parser.add_argument(
        "--frames-dir",
        type=Path,
        default=None,
        help="frames for precision and speed (a centred box as mask)",
    )
    parser.add_argument("--frames", type=int, default=None, help="720p clip length")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per case")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 timed call, default SDPA backend only, compile 'default' only",
    )
    parser.add_argument("--cpu-compile", action="store_true", help="try compile on the CPU")
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads (default: torch's; 1 at test size)"
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--davis-val", type=Path, default=None, help="DAVIS 2016 val (examples)")
    parser.add_argument("--davis-train", type=Path, default=None, help="DAVIS 2016 train, 240p")
    args = parser.parse_args(argv)

    began = time.perf_counter()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available on this machine")
    if device.type == "cuda":  # an index, which the memory-fraction call needs
        device = torch.device(
            "cuda", torch.cuda.current_device() if device.index is None else device.index
        )
        torch.cuda.set_device(device)
    # fp32 is the reference: no TF32 in its matmuls or convolutions.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    speed_dtype = (
        DTYPES[args.dtype]
        if args.dtype != "auto"
        else (torch.float16 if device.type == "cuda" else torch.float32)
    )
    torch.manual_seed(args.seed)
    model = load_model(args.checkpoint) if args.checkpoint else build_model(args.preset)
    small = model.config.embed_dim <= 128
    # A test-size model gains nothing from threads, and on a busy machine every OpenMP region
    # waits for a descheduled one (test-small's paint: 2-5 s against 0.03 s with one thread).
    threads = args.threads or (1 if device.type == "cpu" and small else None)
    if threads is not None:
        torch.set_num_threads(threads)
    repeats = args.repeats or (1 if args.quick else 2 if small else 3)

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        clip_frames, clip_labels = make_clip(
            args.seed, clip_length(args, small), height=720, width=1280, num_objects=2
        )
        clip = scratch / "synthetic_720p.mp4"
        write_video(clip, clip_frames, fps=24)
        if args.frames_dir is not None:
            frames, masks = read_frames(args.frames_dir, max(PROMPT_COUNTS) + BATCHES[-1])
        else:
            frames = clip_frames
            masks = np.repeat((clip_labels > 0)[..., None] * np.uint8(255), 3, axis=-1)
        check = Check(
            device, speed_dtype, model, frames, masks, repeats, args.quick, args.cpu_compile
        )
        result: dict = {
            "command": " ".join(["python", *(argv if argv is not None else sys.argv)]),
            "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": {**machine(), "gpu": gpu_info(device)},
            "settings": {
                "device": str(device),
                "model": model.config.name,
                "weights": str(args.checkpoint) if args.checkpoint else f"random, seed {args.seed}",
                "speed_dtype": dtype_name(speed_dtype),
                "repeats": repeats,
                "quick": args.quick,
                "inputs": str(args.frames_dir) if args.frames_dir else "the synthetic 720p clip",
                "tf32": {"matmul": False, "cudnn": False},
                "peak_memory_source": "torch.cuda.max_memory_allocated"
                if device.type == "cuda"
                else "profiler allocation events (CPU tensors)",
            },
        }
        sections: list[tuple[str, Callable[[], dict]]] = [
            ("precision", lambda: check_precision(check)),
            ("throughput", lambda: check_throughput(check)),
            ("crop_batching", lambda: check_crop_batching(check)),
            ("attention", lambda: check_attention(check)),
            ("compile", lambda: check_compile(check, eager_case(result))),
            ("oom_backoff", lambda: check_oom_backoff(check)),
            ("end_to_end", lambda: check_end_to_end(check, clip, clip_labels[0], scratch)),
            ("examples", lambda: check_examples(check, clip_frames, clip_labels, args.seed)),
        ]
        if args.davis_val is not None and args.davis_train is not None and args.checkpoint:
            sections.append(("davis_examples", lambda: check_davis_examples(args)))
        name = "gpu_check" if device.type == "cuda" else "gpu_check_cpu"
        for section, run in sections:
            result[section] = run_section(section, run)
            result["seconds_total"] = round(time.perf_counter() - began, 2)
            path = write_json(name, result, args.json)  # kept if a later section kills the run
    summary_tables(result)
    print("wrote", path, f"in {result['seconds_total']} s")
    return result


def eager_case(result: dict) -> dict | None:
    """The throughput case compile is compared with: 1 prompt, batch 8."""
    for row in result["throughput"]["cases"]:
        if (row["prompts"], row["batch"]) == (1, COMPILE_BATCH) and "error" not in row:
            return row
    return None


if __name__ == "__main__":
    failed = [
        name for name, section in main().items() if isinstance(section, dict) and "error" in section
    ]
    sys.exit(f"sections failed: {', '.join(failed)}" if failed else 0)
