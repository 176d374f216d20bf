"""``seggpt-video studio``: make the first mask, propagate, review and correct, in a browser."""

from __future__ import annotations

import socket
import threading
import webbrowser
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from seggpt_video.cli.app import app
from seggpt_video.cli.options import (
    REFINE_DEFAULT,
    Checkpoint,
    Device,
    Dtype,
    Memory,
    ModelName,
    RefineOption,
)
from seggpt_video.errors import UserError

console = Console(stderr=True)
EXTRA = "pip install 'seggpt-video[studio]'"


@app.command()
def studio(
    video: Annotated[
        Path, typer.Argument(help="Video file (mp4, mov, mkv, webm, avi) or frame folder.")
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            metavar="DIR",
            help="Folder for the objects, annotations (annotations/) and results (results/); "
            "reopening it restores them.",
        ),
    ] = Path("seggpt-studio"),
    host: Annotated[
        str,
        typer.Option(
            metavar="ADDRESS", help="Address to listen on; 0.0.0.0 serves every network (warned)."
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(metavar="N", help="Port to listen on; 0 picks a free one.")
    ] = 0,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Print the URL only (e.g. on a remote machine).")
    ] = False,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME", help="Another Host name the page may be reached by (a reverse proxy's)."
        ),
    ] = None,
    example: Annotated[
        list[str] | None,
        typer.Option(
            "--example",
            metavar="IMAGE:MASK",
            help="An image and its mask from outside the video, used as a prompt (it may serve "
            "instead of annotating frame 0); repeat as needed.",
        ),
    ] = None,
    memory: Memory = None,
    refine: RefineOption = REFINE_DEFAULT,
    model: ModelName = None,
    checkpoint: Checkpoint = None,
    device: Device = "auto",
    dtype: Dtype = "auto",
) -> None:
    """Open a video in the browser: draw the first mask, propagate, review, correct, export."""
    try:
        import cv2  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn
    except ImportError as error:
        raise UserError(f"the studio needs its extra ({error.name} is missing): {EXTRA}") from None
    import seggpt_video
    from seggpt_video.studio.server import StudioConfig, create_app

    if not 0 <= port <= 65535:
        raise UserError(f"--port {port}: expected 0 to 65535")
    examples = list(example or [])
    segmenter = seggpt_video.load(
        model, checkpoint, device, dtype, memory=memory, refine=refine.value, lazy=True
    )
    listener = _listen(host, port)
    try:
        config = StudioConfig(
            video=video,
            out=output,
            segmenter=segmenter,
            model_options=_run_options(model, checkpoint, memory, refine.value, device, dtype),
            examples=examples,
            host=host,
            allow_hosts=list(allow_host or []),
        )
        studio_app = create_app(config)  # reads frame 0: a bad video fails here, in one line
    except BaseException:
        listener.close()
        raise
    bound = listener.getsockname()[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("localhost" if host == "::" else host)
    shown = f"[{shown}]" if ":" in shown else shown
    url = f"http://{shown}:{bound}/?token={config.token}"
    if host in ("0.0.0.0", "::", ""):
        console.print(
            f"[yellow]warning:[/] listening on every network interface ({host}): anyone who can "
            "reach this machine and learns the token can use the studio; prefer 127.0.0.1 and an "
            "SSH tunnel (ssh -L PORT:localhost:PORT)",
            highlight=False,
        )
    console.print(f"studio for {video} (outputs in {output}); Ctrl-C stops it", highlight=False)
    print(url, flush=True)
    server = uvicorn.Server(
        uvicorn.Config(studio_app, log_level="warning", timeout_graceful_shutdown=3, lifespan="on")
    )
    if not no_browser:
        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    try:
        server.run(sockets=[listener])  # stops on Ctrl-C: the propagation is cancelled first
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the signal it handled; stopping is this command's normal end
    console.print("studio stopped; reopen the same -o folder to continue", highlight=False)


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket, or one line on why not (a busy port) before anything starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(64)
    except OSError as error:
        listener.close()
        reason = error.strerror or str(error)
        raise UserError(f"--host {host} --port {port}: cannot listen there ({reason})") from None
    return listener


def _run_options(
    model: str | None,
    checkpoint: Path | None,
    memory: int | None,
    refine: str,
    device: str,
    dtype: str,
) -> list[str]:
    """The `run` options that choose the same segmenter (shown in the page's command)."""
    words: list[str] = []
    if model is not None:
        words += ["--model", model]
    if checkpoint is not None:
        words += ["--checkpoint", str(checkpoint)]
    if memory is not None:
        words += ["--memory", str(memory)]
    if refine != REFINE_DEFAULT.value:
        words += ["--refine", refine]
    if device != "auto":
        words += ["--device", device]
    if dtype != "auto":
        words += ["--dtype", dtype]
    return words
