"""`train`, `tune` and `demo`: in-context coloring, in-context tuning, and a synthetic try-out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from seggpt_video.cli.app import app
from seggpt_video.cli.options import Checkpoint, Device, ModelName
from seggpt_video.errors import UserError


@app.command()
def train(
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", metavar="DIR", help="Run folder (checkpoint, log, weights)."
        ),
    ],
    preset: Annotated[
        str, typer.Option(metavar="NAME", help="Model preset to train from scratch.")
    ] = "seggpt-tiny",
    steps: Annotated[int, typer.Option(metavar="N", min=1, help="Optimiser steps.")] = 1800,
    batch_size: Annotated[int, typer.Option(metavar="N", min=1, help="Pairs per step.")] = 8,
    lr: Annotated[
        float, typer.Option(metavar="LR", help="Peak learning rate (AdamW, cosine decay).")
    ] = 6e-4,
    warmup: Annotated[int, typer.Option(metavar="N", min=0, help="Linear warm-up steps.")] = 200,
    weight_decay: Annotated[float, typer.Option(metavar="WD", help="AdamW weight decay.")] = 0.05,
    half_mask_ratio: Annotated[
        float,
        typer.Option(
            metavar="SHARE",
            min=0.0,
            max=1.0,
            help="Share of pairs whose whole query mask is hidden.",
        ),
    ] = 0.85,
    prompt_noise: Annotated[
        float,
        typer.Option(
            metavar="SHARE",
            min=0.0,
            max=1.0,
            help="Share of whole-query pairs whose prompt mask is degraded (eroded, dilated, "
            "shifted, coarsened), as the model's own predictions are when they become prompts.",
        ),
    ] = 0.5,
    ensemble_prompts: Annotated[
        int,
        typer.Option(
            metavar="N",
            min=1,
            help="Feature-ensemble steps give each query 2 to this many prompts (an early true "
            "mask and the frames just before the query), as `run` does; 1: no such steps.",
        ),
    ] = 1,
    ensemble_share: Annotated[
        float,
        typer.Option(
            metavar="SHARE", min=0.0, max=1.0, help="Share of steps that are feature-ensemble."
        ),
    ] = 0.0,
    davis: Annotated[
        list[Path] | None,
        typer.Option(
            metavar="DIR",
            help="DAVIS-layout training folder (repeatable); pairs are frames of one sequence.",
        ),
    ] = None,
    davis_weight: Annotated[
        float, typer.Option(metavar="WEIGHT", min=0.0, help="Sampling weight of DAVIS pairs.")
    ] = 0.1,
    davis_exclude: Annotated[
        str | None,
        typer.Option(
            metavar="NAME,...",
            help="DAVIS sequences kept out of training, comma-separated (a split).",
        ),
    ] = None,
    davis_augment: Annotated[
        bool,
        typer.Option(help="Colour jitter and a query crop moved against the prompt's."),
    ] = False,
    davis_composites: Annotated[
        float,
        typer.Option(
            metavar="SHARE",
            min=0.0,
            max=1.0,
            help="Share of DAVIS samples that are multi-object: 1-2 objects of other sequences "
            "pasted over a sequence, scaled 0.15-0.6; the rest stay single-object.",
        ),
    ] = 0.0,
    late_annotation: Annotated[
        float,
        typer.Option(
            metavar="SHARE",
            min=0.0,
            max=1.0,
            help="Share of multi-object feature-ensemble groups with an object first annotated "
            "on a later frame (entering there, or visible but unannotated before).",
        ),
    ] = 0.0,
    object_windows: Annotated[
        float,
        typer.Option(
            metavar="SHARE",
            min=0.0,
            max=1.0,
            help="Share of multi-object samples cut as the crop pass sees a small object: "
            "windows twice its side around it, that object alone.",
        ),
    ] = 0.0,
    synthetic_weight: Annotated[
        float, typer.Option(metavar="WEIGHT", min=0.0, help="Sampling weight of synthetic pairs.")
    ] = 1.0,
    seed: Annotated[
        int, typer.Option(metavar="N", help="Seed of the initialisation and of every batch.")
    ] = 0,
    init: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Start from these weights (e.g. a first run's) instead of from scratch.",
        ),
    ] = None,
    warm_start: Annotated[
        bool, typer.Option(help="Start half the heads attending to the other half's same place.")
    ] = True,
    minutes: Annotated[
        float | None,
        typer.Option(
            metavar="MIN", help="Time budget: cosine decay over this much training time, then stop."
        ),
    ] = None,
    bf16: Annotated[
        bool, typer.Option(help="CPU bfloat16 autocast (faster on AVX-512 BF16).")
    ] = True,
    checkpoint_minutes: Annotated[
        float, typer.Option(metavar="MIN", min=0.0, help="Save a checkpoint this often.")
    ] = 3.0,
    max_minutes: Annotated[
        float | None, typer.Option(metavar="MIN", help="Stop (resumably) after this many minutes.")
    ] = None,
    export: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Also write fp16 weights here when done (e.g. the packaged model file).",
        ),
    ] = None,
) -> None:
    """Train SegGPT by in-context coloring; re-run the same command to resume."""
    from seggpt_video.clip import prepare_output
    from seggpt_video.training.coloring import TrainConfig
    from seggpt_video.training.coloring import train as run_training
    from seggpt_video.training.tuning import export_weights

    davis = davis or []
    if preset not in _presets():
        raise UserError(f"--preset {preset}: unknown (known: {', '.join(_presets())})")
    for folder in davis:
        if not folder.is_dir():
            raise UserError(f"{folder}: no such DAVIS folder")
    if export is not None and export.is_dir():
        raise UserError(f"{export}: a folder; --export takes the weights file to write")
    prepare_output(output)  # before the model is built: an --output that is a file fails now
    config = TrainConfig(
        preset=preset,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup=warmup,
        weight_decay=weight_decay,
        half_mask_ratio=half_mask_ratio,
        prompt_noise=prompt_noise,
        ensemble_prompts=ensemble_prompts,
        ensemble_share=ensemble_share,
        davis=[str(p.resolve()) for p in davis],
        davis_weight=davis_weight,
        davis_exclude=[n.strip() for n in (davis_exclude or "").split(",") if n.strip()],
        davis_augment=davis_augment,
        davis_composites=davis_composites,
        late_annotation=late_annotation,
        object_windows=object_windows,
        synthetic_weight=synthetic_weight,
        seed=seed,
        bf16=bf16,
        minutes=minutes,
        warm_start=warm_start,
        init=str(init.resolve()) if init is not None else None,
    )
    final = run_training(
        config, output, checkpoint_minutes=checkpoint_minutes, max_minutes=max_minutes
    )
    if final is None:
        typer.echo(f"stopped after {max_minutes} minutes; re-run the same command to resume")
        return
    typer.echo(f"weights: {final}")
    if export is not None:
        export_weights(final, export)
        typer.echo(f"exported: {export}")


def _presets() -> list[str]:
    from seggpt_video.model import PRESETS

    return sorted(PRESETS)


@app.command()
def tune(
    video: Annotated[Path, typer.Argument(metavar="VIDEO", help="Video file or folder of frames.")],
    annotations: Annotated[
        Path,
        typer.Argument(
            metavar="MASKS",
            help="Mask of frame 0, or a folder of masks named by frame (00000.png, ...).",
        ),
    ],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", metavar="FILE", help="Prompt file to write (.safetensors)."),
    ],
    model: ModelName = None,
    checkpoint: Checkpoint = None,
    steps: Annotated[int, typer.Option(metavar="N", min=1, help="Optimiser steps.")] = 100,
    lr: Annotated[
        float, typer.Option(metavar="LR", help="Adam learning rate of the prompt.")
    ] = 0.02,
    num_prompts: Annotated[
        int, typer.Option(metavar="N", min=1, help="Learnable prompts (from the first frames).")
    ] = 1,
    device: Device = "auto",
    seed: Annotated[int, typer.Option(metavar="N", help="Seed of the augmentations.")] = 0,
) -> None:
    """In-context tuning: learn a prompt from a few annotated frames (the model stays frozen)."""
    from seggpt_video.io.masks import read_mask
    from seggpt_video.io.video import open_video
    from seggpt_video.predictor import load_predictor
    from seggpt_video.training.tuning import save_tuned_prompt, tune_prompt

    if output.suffix != ".safetensors":
        raise UserError(f"{output}: the prompt file must end in .safetensors")
    if output.is_dir():  # found now, not after the tuning steps
        raise UserError(f"{output}: a folder; -o takes the prompt file to write")
    if output.parent.exists() and not output.parent.is_dir():
        raise UserError(f"{output.parent}: a file, not a folder to hold the prompt file")
    with open_video(video) as source:
        info = source.info
        size = (info.height, info.width)
        if annotations.is_dir():
            masks = {
                index: annotations / f"{name}.png"
                for index, name in enumerate(info.frame_names)
                if (annotations / f"{name}.png").is_file()
            }
            if not masks:
                raise UserError(f"{annotations}: no mask named like a frame of {video} (00000.png)")
        else:
            masks = {0: annotations}
        labels = [read_mask(path, size=size) for path in masks.values()]
        frames = [source.get_frame(index) for index in masks]
    predictor = load_predictor(model=model, checkpoint=checkpoint, device=device, dtype="fp32")
    typer.echo(f"tuning on {len(frames)} annotated frame(s) of {video}")
    prompt, losses = tune_prompt(
        predictor, frames, labels, num_prompts=num_prompts, steps=steps, lr=lr, seed=seed
    )
    save_tuned_prompt(prompt, output)
    typer.echo(f"loss {losses[0]:.4f} -> {losses[-1]:.4f}; prompt: {output}")


@app.command()
def demo(
    output: Annotated[
        Path,
        typer.Option("--output", "-o", metavar="DIR", help="Folder for the clip and the results."),
    ],
    seed: Annotated[
        int, typer.Option(metavar="N", help="Seed of the synthetic clip (training never uses it).")
    ] = 20240,
    frames: Annotated[int, typer.Option(metavar="N", min=3, help="Frames in the clip.")] = 40,
    objects: Annotated[int, typer.Option(metavar="N", min=1, max=8, help="Moving objects.")] = 2,
    height: Annotated[int, typer.Option(metavar="PX", min=16, help="Frame height in pixels.")] = 96,
    width: Annotated[int, typer.Option(metavar="PX", min=16, help="Frame width in pixels.")] = 128,
    model: ModelName = None,
    checkpoint: Checkpoint = None,
    prompt_file: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Tuned prompt to add (from `tune`).")
    ] = None,
    device: Device = "auto",
    clip_only: Annotated[
        bool,
        typer.Option(help="Only write the clip and its first-frame mask (to try `run` on them)."),
    ] = False,
) -> None:
    """Make a synthetic clip, segment it with the model and print J&F against its true masks.

    Writes OUT/synthetic-SEED.mp4, its first-frame mask synthetic-SEED_mask.png and its true
    masks in OUT/ground_truth/synthetic-SEED/; then the DAVIS masks OUT/synthetic-SEED/ and the
    overlay OUT/synthetic-SEED_overlay.mp4.
    """
    from rich.progress import Progress

    from seggpt_video.clip import prepare_output
    from seggpt_video.engine import SegmenterOptions, default_memory
    from seggpt_video.predictor import load_predictor
    from seggpt_video.training.demo import score_clip, segment_clip, write_synthetic_clip
    from seggpt_video.training.tuning import load_tuned_prompt

    prepare_output(output)
    predictor = None
    if not clip_only:  # a bad model or prompt file fails before anything is written
        predictor = load_predictor(model=model, checkpoint=checkpoint, device=device)
        extra = load_tuned_prompt(prompt_file, predictor) if prompt_file is not None else None
    clip = write_synthetic_clip(output, seed, frames, height, width, objects)
    typer.echo(f"clip: {clip.video}  first-frame mask: {clip.first_mask}")
    typer.echo(f"true masks: {clip.ground_truth}")
    if predictor is None:
        return
    with Progress() as progress:
        task = progress.add_task("segmenting", total=frames)
        masks = segment_clip(
            clip,
            predictor,
            output,
            SegmenterOptions(memory=default_memory(predictor.name), extra_prompts=extra),
            on_frame=lambda _: progress.advance(task),
        )
    scores = score_clip(clip, output)
    typer.echo(f"masks: {masks}  overlay: {output / (clip.name + '_overlay.mp4')}")
    typer.echo(
        f"J&F-Mean {scores['J&F-Mean']:.3f}  J-Mean {scores['J-Mean']:.3f}  "
        f"F-Mean {scores['F-Mean']:.3f}  (against the synthetic ground truth)"
    )
