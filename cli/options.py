"""Command-line options that several commands share, declared once, and what they build."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from seggpt_video.api import VideoSegmenter
    from seggpt_video.engine import Segmenter

# seggpt_video.refine.DEFAULT_REFINE, written out so that declaring the options imports no torch
# (tests/test_cli_help.py checks that the two agree).
DEFAULT_REFINE = "guided"

ModelName = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        metavar="NAME",
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
        metavar="PATH",
        help="Weights file or folder: the release's .pth, a Hugging Face folder or .safetensors.",
    ),
]
Device = Annotated[str, typer.Option(metavar="DEVICE", help="auto, cpu, cuda or cuda:N.")]
Dtype = Annotated[
    str,
    typer.Option(
        metavar="DTYPE",
        help="auto (fp16 on CUDA, fp32 on CPU), fp32, fp16, bf16 (CPU: only where it is native).",
    ),
]


class Ensemble(str, Enum):
    """How several prompts combine."""

    feature = "feature"
    spatial = "spatial"


class Crops(str, Enum):
    """Whether small objects are segmented on a window around them (seggpt_video/crops.py)."""

    auto = "auto"
    on = "on"
    off = "off"


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
        metavar="N",
        help="Most recent predicted frames used as prompts. Default: 8 (the paper's best), 2 for "
        "the packaged seggpt-tiny (as accurate there, twice as fast).",
    ),
]
BatchSize = Annotated[
    int,
    typer.Option(
        callback=at_least(1),
        metavar="N",
        help="Frames per model call; they share the prompt memory.",
    ),
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
CropsOption = Annotated[
    Crops,
    typer.Option(
        help="auto: objects under 6% of the frame where annotated are segmented on a window "
        "around them and pasted back; on: every object; off: never."
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
        metavar="FORMAT",
        help="davis, youtube-vos, overlay, matte, prores, y4m, summary; repeat for several. "
        "Default: davis, overlay, summary.",
    ),
]
ResizeMask = Annotated[
    bool, typer.Option(help="Resize masks whose size differs from the video's (nearest).")
]
Backend = Annotated[
    str,
    typer.Option(
        metavar="NAME",
        help="Video decoder: auto (= pyav, constant memory) or decord (decodes ahead without "
        "bound: a long clip may fill RAM).",
    ),
]
Overwrite = Annotated[
    bool, typer.Option(help="Start afresh instead of resuming (or skipping) earlier work in -o.")
]
PromptFile = Annotated[
    Path | None,
    typer.Option(
        metavar="FILE", help="A tuned prompt from `seggpt-video tune`, used for every frame."
    ),
]


def resolve_memory(memory: int | None, model: str | None, checkpoint: Path | None) -> int:
    """--memory as given, else the default for the model these options load."""
    from seggpt_video.engine import default_memory
    from seggpt_video.predictor import model_name

    return memory if memory is not None else default_memory(model_name(model, checkpoint))


class Task(str, Enum):
    """The seg type token the model is shown (the release has both; instance for video)."""

    instance = "instance"
    semantic = "semantic"


ExampleOption = Annotated[
    list[str] | None,
    typer.Option(
        "--example",
        metavar="IMAGE:MASK",
        help="An image from outside the video with its mask (palette, 0/255 or RGB PNG): a "
        "prompt for every frame; repeat for several. With an example --mask is optional.",
    ),
]
TaskOption = Annotated[
    Task,
    typer.Option(
        help="The seg type token: instance (the release's default for video) or semantic."
    ),
]


def choose_segmenter(
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
    task: Task | str = "instance",
    crops: Crops | str = "auto",
) -> VideoSegmenter:
    """The segmenter these options ask for, its model not loaded yet (see seggpt_video.load;
    memory None: the model's default)."""
    from seggpt_video.api import load

    return load(
        model,
        checkpoint,
        device,
        dtype,
        lazy=True,
        memory=memory,
        batch_size=batch_size,
        ensemble=Ensemble(ensemble).value,
        per_object=per_object,
        refine=Refine(refine).value,
        soft=soft,
        task=Task(task).value,
        crops=Crops(crops).value,
        prompt_file=prompt_file,
    )


def build_segmenter(*args, **kwargs) -> Segmenter:
    """The propagation engine around the loaded model (arguments as choose_segmenter)."""
    return choose_segmenter(*args, **kwargs).engine
