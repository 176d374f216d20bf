"""Command-line options shared by the commands that load a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
Dtype = Annotated[str, typer.Option(help="auto (fp16 on CUDA, fp32 on CPU), fp32, fp16, bf16.")]
