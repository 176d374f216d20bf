"""Command-line options that several commands share, declared once, and what they build."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from seggpt_video.refine import DEFAULT_REFINE

if TYPE_CHECKING:
    from seggpt_video.engine import Segmenter

ModelName = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Model name: seggpt-tiny (packaged) or seggpt-vit-large (the published weights, "
        "fetched once by `seggpt-video download`). Default: seggpt-vit-large when its weights "
        "are on this machine, else seggpt-tiny.",
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


class Refine(str, Enum):
    """How the upsampled prediction is refined before its ids are decided (see refine.py)."""

    guided = "guided"
    none = "none"


REFINE_DEFAULT = Refine(DEFAULT_REFINE)  # --refine's default, decided in refine.py


def at_least(minimum: int):
    """An option check whose message shows the value given: '-1: must be 0 or more'."""

    def check(value: int | None) -> int | None:
        if value is not None and value < minimum:
            raise typer.BadParameter(f"{value}: must be {minimum} or more")
        return value

    return check


Memory = Annotated[
    int | None,
    typer.Option(
        callback=at_least(0),
        help="Most recent predicted frames used as prompts. Default: 8 (the paper's best), 2 for "
        "the packaged seggpt-tiny (as accurate there, twice as fast).",
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
RefineOption = Annotated[
    Refine,
    typer.Option(
        help="guided: the upsampled prediction follows the frame's edges (guided filter); "
        "none: decoded as painted. The prompt memory is the same either way."
    ),
]
Soft = Annotated[
    bool,
    typer.Option(
        help="matte, prores and y4m carry soft mattes (0-255, > 127 where the mask is) instead "
        "of 0/255; masks and overlays stay hard."
    ),
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


def resolve_memory(memory: int | None, model: str | None, checkpoint: Path | None) -> int:
    """--memory as given, else the default for the model these options load."""
    from seggpt_video.engine import default_memory
    from seggpt_video.predictor import model_name

    return memory if memory is not None else default_memory(model_name(model, checkpoint))


def build_segmenter(
    model: str | None,
    checkpoint: Path | None,
    device: str,
    dtype: str,
    memory: int | None,
    batch_size: int,
    ensemble: Ensemble | str,
    per_object: bool,
    prompt_file: Path | None,
    refine: Refine | str = DEFAULT_REFINE,
    soft: bool = False,
) -> Segmenter:
    """The model loaded as asked and the propagation options around it (memory None: the
    model's default, see resolve_memory)."""
    from seggpt_video.engine import Segmenter, SegmenterOptions
    from seggpt_video.predictor import load_predictor

    predictor = load_predictor(model=model, checkpoint=checkpoint, device=device, dtype=dtype)
    extra = None
    if prompt_file is not None:
        from seggpt_video.training.tuning import load_tuned_prompt

        extra = load_tuned_prompt(prompt_file, predictor)
    options = SegmenterOptions(
        memory=resolve_memory(memory, model, checkpoint),
        batch_size=batch_size,
        per_object=per_object,
        extra_prompts=extra,
        ensemble=Ensemble(ensemble).value,
        refine=Refine(refine).value,
        soft=soft,
    )
    return Segmenter(predictor, options)
