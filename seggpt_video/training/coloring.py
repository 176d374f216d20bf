"""In-context coloring: train SegGPT to paint the hidden part of a target from its context.

The loss is the release's ``forward_loss``: smooth L1 (beta 0.01) between the painted output and
the target, in normalised space, averaged over the pixels of the masked patches only.
Training state lives in one output folder: ``checkpoint.pt`` (model, optimiser, step; written
atomically every few minutes, so an interrupted run resumes where it stopped), ``log.jsonl``
(one line per logged step) and, at the end, ``model.safetensors``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from seggpt_video.errors import UserError
from seggpt_video.io.atomic import atomic_path, write_text_atomic
from seggpt_video.model import SegGPT, build_model, load_checkpoint, save_checkpoint
from seggpt_video.training.composites import CompositePairs, LateAnnotation
from seggpt_video.training.pairs import (
    Batch,
    DavisPairs,
    SyntheticPairs,
    make_batch,
    make_group_batch,
)

CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"
FINAL = "model.safetensors"


def masked_patch_loss(
    prediction: torch.Tensor, target: torch.Tensor, bool_masked_pos: torch.Tensor, patch: int
) -> torch.Tensor:
    """Smooth L1 (beta 0.01) averaged over the pixels of masked patches.

    prediction, target: (N, 3, H, W) normalised; bool_masked_pos: (N, L) over the (H/p, W/p) grid.
    """
    batch, _, height, width = target.shape
    grid = bool_masked_pos.reshape(batch, 1, height // patch, width // patch).to(prediction.dtype)
    pixels = grid.repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3)
    loss = F.smooth_l1_loss(prediction, target, reduction="none", beta=0.01)
    return (loss * pixels).sum() / (pixels.sum() * 3 + 1e-2)


def coloring_step(model: SegGPT, batch: Batch, bf16: bool) -> torch.Tensor:
    """Forward one batch and return the loss (fp32 scalar)."""
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
    # With feature ensemble the prompts of a query share its painted query half: decode it once,
    # from the first prompt, as the predictor does.
    first = slice(None, None, batch.prompts)
    with autocast:
        features = model.forward_features(
            batch.imgs, batch.tgts, batch.bool_masked_pos, batch.seg_type, batch.prompts
        )
        prediction = model.forward_decoder([f[first] for f in features])
    return masked_patch_loss(
        prediction.float(), batch.tgts[first], batch.bool_masked_pos[first], model.config.patch_size
    )


@dataclass
class TrainConfig:
    """Everything that decides a training run (saved in the checkpoint; a resume must match).

    The data and optimiser defaults are the packaged seggpt-tiny's recipe (README, Training).
    """

    preset: str = "seggpt-tiny"
    steps: int = 6000
    batch_size: int = 8
    lr: float = 6e-4
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup: int = 200
    half_mask_ratio: float = 0.85
    prompt_noise: float = 0.5  # see pairs.degrade_prompt
    # Feature-ensemble steps (pairs.make_group_batch): this share of the steps gives each query
    # 2 to ``ensemble_prompts`` prompts, as the engine does with its memory; 1 turns them off.
    ensemble_prompts: int = 1
    ensemble_share: float = 0.0
    davis: list[str] = field(default_factory=list)
    davis_weight: float = 0.1
    # DAVIS sequences kept out of training (a validation split of one's own) and DAVIS
    # augmentation (shared colour jitter, a query box moved against the prompt's).
    davis_exclude: list[str] = field(default_factory=list)
    davis_augment: bool = False
    # Multi-object samples (issue 24, training.composites): this share of the DAVIS weight goes
    # to copy-paste composites of those sequences (the rest stays single-object DAVIS), and this
    # share of multi-object ensemble groups has an object first annotated on a later prompt.
    davis_composites: float = 0.0
    late_annotation: float = 0.0
    # This share of the composites is cut as the engine's crop pass sees a small object: windows
    # around it, that object alone (composites.object_windows).
    object_windows: float = 0.0
    synthetic_weight: float = 1.0
    seed: int = 0
    bf16: bool = False
    # A wall-time budget: the cosine decay follows elapsed time and training ends when it is
    # spent (``steps`` is then an upper bound). Deterministic data, machine-dependent length.
    minutes: float | None = None
    warm_start: bool = True  # see warm_start_attention
    init: str | None = None  # start from these weights (a second phase) instead of from scratch


def schedule_progress(config: TrainConfig, step: int, seconds: float) -> float:
    """How far training is, 0..1: by steps, or by elapsed time when there is a time budget."""
    by_steps = step / config.steps
    if config.minutes is None:
        return by_steps
    return max(by_steps, seconds / (60 * config.minutes))


def learning_rate(config: TrainConfig, step: int, progress: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``min_lr`` at progress 1."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = min(1.0, progress)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress))


def build_sources(config: TrainConfig, size: int) -> tuple[list, list[float]]:
    """Pair sources and their sampling weights."""
    for name in ("davis_composites", "late_annotation", "object_windows"):
        if not 0 <= getattr(config, name) <= 1:
            raise UserError(f"train: {name} {getattr(config, name)}: expected a share in [0, 1]")
    sources: list = []
    weights: list[float] = []
    if config.synthetic_weight > 0:
        synthetic = SyntheticPairs(size)
        if config.late_annotation > 0:
            synthetic = LateAnnotation(synthetic, config.late_annotation)
        sources.append(synthetic)
        weights.append(config.synthetic_weight)
    for root in config.davis:
        davis = DavisPairs(
            root, size, exclude=set(config.davis_exclude), augment=config.davis_augment
        )
        if config.davis_composites < 1:
            sources.append(davis)
            weights.append(config.davis_weight * (1 - config.davis_composites))
        if config.davis_composites > 0:
            composites = CompositePairs(
                davis.sequences,
                size,
                late_share=config.late_annotation,
                window_share=config.object_windows,
            )
            sources.append(LateAnnotation(composites, config.late_annotation))
            weights.append(config.davis_weight * config.davis_composites)
    if not sources:
        raise UserError("train: no data (synthetic weight is 0 and no --davis folder given)")
    return sources, weights


def next_batch(
    config: TrainConfig,
    sources: list,
    weights: list[float],
    grid: tuple[int, int],
    rng: np.random.Generator,
) -> Batch:
    """One step's batch: pairs, or (``ensemble_share`` of the steps) feature-ensemble groups."""
    ensemble = config.ensemble_prompts > 1 and rng.random() < config.ensemble_share
    if ensemble:
        prompts = int(rng.integers(2, config.ensemble_prompts + 1))
        return make_group_batch(
            sources, weights, config.batch_size, prompts, grid, rng, config.prompt_noise
        )
    return make_batch(
        sources,
        weights,
        config.batch_size,
        grid,
        rng,
        config.half_mask_ratio,
        config.prompt_noise,
    )


def _save_atomic(obj: dict, path: Path) -> None:
    with atomic_path(path) as partial:
        torch.save(obj, partial)


def _rewrite_log(path: Path, upto_step: int) -> None:
    """Drop log lines after the resumed step, so a resumed log has no duplicates."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line)["step"] <= upto_step]
    write_text_atomic(path, "".join(line + "\n" for line in kept))


def train(
    config: TrainConfig,
    output: Path | str,
    checkpoint_minutes: float = 3.0,
    log_every: int = 20,
    max_minutes: float | None = None,
    progress: bool = True,
    on_log: Callable[[dict], None] | None = None,
) -> Path | None:
    """Train (or resume) in ``output``; returns the final weights path, or None when stopped early.

    ``max_minutes`` stops after that much wall time with a checkpoint saved; run again to resume.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    model = build_model(config.preset)
    if config.init is not None:
        model.load_state_dict(load_checkpoint(config.init).state_dict())
    elif config.warm_start:
        warm_start_attention(model, seed=config.seed)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.999)
    )
    step, elapsed = 0, 0.0
    checkpoint_path = output / CHECKPOINT
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        # Settings added since a checkpoint was made had their defaults then.
        if {**asdict(TrainConfig()), **state["config"]} != asdict(config):
            raise UserError(
                f"{checkpoint_path}: was made with different settings ({state['config']}); "
                "use another --output folder or the same options"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed = state["step"], state["elapsed"]
    _rewrite_log(output / LOG, step)
    final_path = output / FINAL
    if final_path.exists() and schedule_progress(config, step, elapsed) >= 1:
        return final_path

    sources, weights = build_sources(config, model.config.prompt_size)

    def save(at_step: int, spent: float) -> None:
        _save_atomic(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": at_step,
                "elapsed": spent,
                "config": asdict(config),
            },
            checkpoint_path,
        )

    model.train()
    start = time.monotonic() - elapsed
    session_start = time.monotonic()
    last_save = time.monotonic()
    running = None
    total = config.steps if config.minutes is None else None  # a time budget: steps unknown
    bar = tqdm(total=total, initial=step, disable=not progress, desc="train", unit="step")
    with (output / LOG).open("a") as log:
        while schedule_progress(config, step, time.monotonic() - start) < 1:
            # The batch depends only on (seed, step): a resumed run sees the same data.
            now = time.monotonic()
            rng = np.random.default_rng([config.seed, step])
            batch = next_batch(config, sources, weights, model.config.grid, rng)
            lr = learning_rate(config, step, schedule_progress(config, step, now - start))
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = coloring_step(model, batch, config.bf16)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
            optimizer.step()
            step += 1
            value = float(loss.detach())
            running = value if running is None else 0.95 * running + 0.05 * value
            bar.update(1)
            done = schedule_progress(config, step, time.monotonic() - start)
            bar.set_postfix(loss=f"{running:.4f}", done=f"{100 * done:.1f}%")
            finished = done >= 1
            if step % log_every == 0 or finished:
                record = {
                    "step": step,
                    "loss": round(value, 6),
                    "smoothed_loss": round(running, 6),
                    "lr": lr,
                    "seconds": round(time.monotonic() - start, 1),
                }
                log.write(json.dumps(record) + "\n")
                log.flush()
                if on_log is not None:
                    on_log(record)
            now = time.monotonic()
            out_of_time = max_minutes is not None and now - session_start > 60 * max_minutes
            if now - last_save > 60 * checkpoint_minutes or finished or out_of_time:
                save(step, now - start)
                last_save = now
            if out_of_time and not finished:
                bar.close()
                return None
    bar.close()
    model.eval()
    save_checkpoint(model, final_path)
    return final_path


def warm_start_attention(model: SegGPT, strength: float = 5.0, seed: int = 0) -> None:
    """Start half the heads of every block looking at the same place in the other half.

    A query token's partner is the prompt token at the same position (and the other way round):
    copying the prompt's mask from there is the first thing in-context coloring has to learn, and
    from the release's initialisation a small model trained for an hour on a CPU never found it
    (the loss stayed at that of painting everything black). The relative position tables give the
    partner offset (half the rows, same column) a bias of about 2 * ``strength`` through a shared
    direction in the query bias of those heads; everything stays trainable.
    """
    rows, cols = model.config.grid
    heads, head_dim = model.config.num_heads, model.config.head_dim
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in model.blocks:
            direction = torch.randn(head_dim, generator=generator)
            direction /= direction.norm()
            query_bias = block.attn.qkv.bias[: heads * head_dim].view(heads, head_dim)
            query_bias[: max(1, heads // 2)] = direction
            for offset in (rows // 2, -(rows // 2)):
                block.attn.rel_pos_h[rows - 1 + offset] = strength * direction
            block.attn.rel_pos_w[cols - 1] = strength * direction
