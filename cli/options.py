"""Command-line options that several commands share, declared once, and what they build."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from seggpt_video.engine import Segmenter

ModelName = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Model name: seggpt-tiny (packaged), seggpt-vit-large (Hugging Face hub or "
        "$SEGGPT_VIDEO_WEIGHTS). Default: seggpt-tiny.",
    ),
]
Checkpoint = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint",
        "-c",
        help="Weights file or folder: the release's .pth, a Hugging Face folder or .safetensors.",
    ),
]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
Dtype = Annotated[
    str,
    typer.Option(
        help="auto (fp16 on CUDA, fp32 on CPU), fp32, fp16, bf16 (CPU: only where it is native)."
    ),
]


class Ensemble(str, Enum):
    """How several prompts combine."""

    feature = "feature"
    spatial = "spatial"


def at_least(minimum: int):
    """An option check whose message shows the value given: '-1: must be 0 or more'."""

    def check(value: int | None) -> int | None:
        if value is not None and value < minimum:
            raise typer.BadParameter(f"{value}: must be {minimum} or more")
        return value

    return check


Memory = Annotated[
    int,
    typer.Option(
        callback=at_least(0), help="Most recent predicted frames used as prompts (paper's best: 8)."
    ),
]
BatchSize = Annotated[
    int,
    typer.Option(callback=at_least(1), help="Frames per model call; they share the prompt memory."),
]
EnsembleOption = Annotated[
    Ensemble,
    typer.Option(help="feature (averaged in attention) or spatial (prompts tiled in a grid)."),
]
PerObject = Annotated[
    bool, typer.Option(help="One pass per object, white on black: slower, no colour mix-ups.")
]
Formats = Annotated[
    list[str] | None,
    typer.Option(
        "--format",
        "-f",
        help="davis, youtube-vos, overlay, matte, prores, y4m, summary; repeat for several. "
        "Default: davis, overlay, summary.",
    ),
]
ResizeMask = Annotated[
    bool, typer.Option(help="Resize masks whose size differs from the video's (nearest).")
]
Backend = Annotated[str, typer.Option(help="Video decoder: auto, decord or pyav.")]
Overwrite = Annotated[
    bool, typer.Option(help="Start afresh instead of resuming (or skipping) earlier work in -o.")
]
PromptFile = Annotated[
    Path | None,
    typer.Option(help="A tuned prompt from `seggpt-video tune`, used for every frame."),
]


def build_segmenter(
    model: str | None,
    checkpoint: Path | None,
    device: str,
    dtype: str,
    memory: int,
    batch_size: int,
    ensemble: Ensemble | str,
    per_object: bool,
    prompt_file: Path | None,
) -> Segmenter:
    """The model loaded as asked and the propagation options around it."""
    from seggpt_video.engine import Segmenter, SegmenterOptions
    from seggpt_video.predictor import load_predictor

    predictor = load_predictor(model=model, checkpoint=checkpoint, device=device, dtype=dtype)
    extra = None
    if prompt_file is not None:
        from seggpt_video.training.tuning import load_tuned_prompt

        extra = load_tuned_prompt(prompt_file, predictor)
    options = SegmenterOptions(
        memory=memory,
        batch_size=batch_size,
        per_object=per_object,
        extra_prompts=extra,
        ensemble=Ensemble(ensemble).value,
    )
    return Segmenter(predictor, options)
