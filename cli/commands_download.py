"""``seggpt-video download``: the only command that fetches weights from the network."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from seggpt_video.cli.app import app

DOWNLOAD_FAILED = 1  # the command was right, the network, hub or disk was not: try again


@app.command()
def download(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Model name: seggpt-vit-large.")],
    to: Annotated[
        Path | None,
        typer.Option(
            "--to",
            help="Put the weights in DIR/NAME/ instead. Default: $SEGGPT_VIDEO_WEIGHTS when set, "
            "else the Hugging Face cache (HF_HOME, HF_HUB_CACHE).",
            metavar="DIR",
        ),
    ] = None,
) -> None:
    """Download a published model's weights, so that run, eval, batch and demo find them.

    A second call finds them and fetches nothing; a call cut short fetches only what is missing.
    Exit code 1 when the download fails (network, hub, disk), 2 for a wrong name or --to.
    """
    from seggpt_video.model.checkpoint import (
        HUB_REPOS,
        WEIGHTS_DIR_ENV,
        DownloadError,
        download_destination,
        download_model,
        downloaded_weights,
        packaged_models,
    )

    present = downloaded_weights(name, to)
    if present is not None:
        what = "packaged with seggpt-video" if name in packaged_models() else "already here"
        typer.echo(f"{name}: {what}, nothing to download: {present}")
        return
    destination = download_destination(name, to)  # a wrong name or folder: said here
    from huggingface_hub import constants as hub_constants

    where = destination or f"the Hugging Face cache ({hub_constants.HF_HUB_CACHE})"
    typer.echo(f"downloading {name} ({HUB_REPOS[name]}) into {where}")
    try:
        result = download_model(name, to)
    except DownloadError as error:
        Console(stderr=True).print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(DOWNLOAD_FAILED) from None
    typer.echo(f"{name}: downloaded to {result.path}")
    if destination is not None and destination.parent.resolve() != _weights_dir():
        typer.echo(
            f"to use it by name: export {WEIGHTS_DIR_ENV}={destination.parent} "
            f"(or pass --checkpoint {result.path})"
        )


def _weights_dir() -> Path | None:
    from seggpt_video.model.checkpoint import WEIGHTS_DIR_ENV

    folder = os.environ.get(WEIGHTS_DIR_ENV)
    return Path(folder).resolve() if folder else None
