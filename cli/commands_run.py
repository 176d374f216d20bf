"""``seggpt-video run``: a video and its first-frame mask in, every frame's masks out."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from seggpt_video.cli.app import INTERRUPTED, app
from seggpt_video.cli.options import (
    REFINE_DEFAULT,
    Backend,
    BatchSize,
    Checkpoint,
    Crops,
    CropsOption,
    Device,
    Dtype,
    Ensemble,
    EnsembleOption,
    ExampleOption,
    Formats,
    Memory,
    ModelName,
    Overwrite,
    PerObject,
    PromptFile,
    RefineOption,
    ResizeMask,
    Soft,
    Task,
    TaskOption,
    choose_segmenter,
)
from seggpt_video.errors import UserError

if TYPE_CHECKING:
    from seggpt_video.engine import SegmentedFrame

# Progress and messages go to stderr: stdout may carry the masks (``-o -``).
console = Console(stderr=True, emoji=False)
DEFAULT_FORMATS = ["davis", "overlay", "summary"]


@app.command(short_help="Segment a video from a first-frame mask or from examples.")
def run(
    video: Annotated[
        Path,
        typer.Argument(
            metavar="VIDEO", help="Video file (mp4, mov, mkv, webm, avi) or frame folder."
        ),
    ],
    mask: Annotated[
        list[str] | None,
        typer.Option(
            "--mask",
            metavar="[FRAME:]FILE",
            help="First-frame mask (palette, 0/255 grayscale or RGB PNG). FRAME:FILE annotates a "
            "later frame (an object that appears later, or a correction); repeat as needed.",
        ),
    ] = None,
    example: ExampleOption = None,
    output: Annotated[
        str,
        typer.Option(
            "--output", "-o", metavar="DIR", help="Output folder, or - to stream mattes to stdout."
        ),
    ] = "seggpt-out",
    formats: Formats = None,
    frames: Annotated[
        str | None,
        typer.Option(
            metavar="START:END",
            help="START:END: segment only these frames (END excluded; e.g. 100:250 or 100:). "
            "The first mask annotates START; FRAME:FILE counts in the video's own frames.",
        ),
    ] = None,
    stream_object: Annotated[
        int | None,
        typer.Option(
            metavar="ID",
            help="With -o -: the object whose matte is streamed (default: all merged).",
        ),
    ] = None,
    memory: Memory = None,
    batch_size: BatchSize = 1,
    ensemble: EnsembleOption = Ensemble.feature,
    per_object: PerObject = False,
    refine: RefineOption = REFINE_DEFAULT,
    soft: Soft = False,
    crops: CropsOption = Crops.auto,
    task: TaskOption = Task.instance,
    prompt_file: PromptFile = None,
    resize_mask: ResizeMask = False,
    backend: Backend = "auto",
    overwrite: Overwrite = False,
    model: ModelName = None,
    checkpoint: Checkpoint = None,
    device: Device = "auto",
    dtype: Dtype = "auto",
) -> None:
    """Segment the objects of the first-frame mask (or of examples) through the whole video."""
    from seggpt_video.clip import STDOUT

    formats = _formats(formats, output)
    segmenter = choose_segmenter(
        model,
        checkpoint,
        device,
        dtype,
        memory,
        batch_size,
        ensemble,
        per_object,
        prompt_file,
        refine=refine,
        soft=soft,
        task=task,
        crops=crops,
    )
    with segmenter.open(
        video, mask, example, frames, resize_mask=resize_mask, backend=backend
    ) as clip:
        for note in clip.warnings:
            console.print(f"[yellow]warning:[/] {escape(note)}", highlight=False)
        if output == STDOUT:
            _check_stream(clip.object_ids, stream_object)
        else:
            segmenter.check_output(clip, output, overwrite)  # before the model loads
        predictor = segmenter.engine.predictor
        info = clip.source.info
        console.print(
            f"{escape(info.name)}: {info.num_frames} frames {info.width}x{info.height} "
            f"@ {info.fps:.3g} fps ({info.backend}); {len(clip.object_ids)} object(s)"
            f"{f', {len(clip.examples)} example(s)' if clip.examples else ''}; "
            f"model {predictor.name} on {predictor.device} {segmenter.dtype_name}",
            highlight=False,
        )
        progress = _FrameProgress(info.name, info.num_frames)
        try:
            with progress:
                report = segmenter.write(
                    clip,
                    output,
                    formats,
                    overwrite=overwrite,
                    stream_object=stream_object,
                    on_frame=progress.advance,
                )
        except KeyboardInterrupt:
            where = "standard output" if output == STDOUT else output
            console.print(
                f"interrupted after {progress.done} of {info.num_frames} frames; finished frames "
                f"are kept in {where}"
                + ("" if output == STDOUT else "; re-run the same command to resume"),
                highlight=False,
            )
            raise typer.Exit(INTERRUPTED) from None
    resumed = f", {report.resumed} read back from an earlier run" if report.resumed else ""
    console.print(
        f"done: {report.frames} frames{resumed}, {report.frames_per_second:.2f} frames/s "
        f"computed; outputs in {output if output != STDOUT else 'standard output'}",
        highlight=False,
    )


def _formats(formats: list[str] | None, output: str) -> list[str]:
    """The formats asked for, checked with the output before any work; standard output carries
    the mattes as YUV4MPEG2 only."""
    from seggpt_video.clip import STDOUT, prepare_output
    from seggpt_video.io.writers import check_formats

    check_formats(formats or [])
    if output != STDOUT:
        prepare_output(Path(output))
        return formats or DEFAULT_FORMATS
    if set(formats or ["matte"]) - {"matte", "y4m"}:
        raise UserError("-o -: only matte (as YUV4MPEG2) can be streamed to standard output")
    if sys.stdout.isatty():
        raise UserError(
            "-o -: standard output is a terminal; pipe it to a program (| ffmpeg -i - out.mkv) "
            "or redirect it to a file"
        )
    return ["y4m"]


def _check_stream(object_ids: list[int], stream_object: int | None) -> None:
    """One stream carries one matte: name the object, or say that several are merged."""
    if stream_object is not None and stream_object not in object_ids:
        raise UserError(
            f"--stream-object {stream_object}: not an object of the masks "
            f"({', '.join(map(str, object_ids))})"
        )
    if stream_object is None and len(object_ids) > 1:
        console.print(
            f"note: the stream carries the union of objects {', '.join(map(str, object_ids))}; "
            "--stream-object ID streams one",
            highlight=False,
        )


class _FrameProgress:
    """A progress bar whose frames/s counts computed frames only, as the closing line does."""

    def __init__(self, name: str, total: int) -> None:
        self.done = 0
        self._computed = 0
        self._began = time.perf_counter()
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[fps]} frames/s"),
            TimeRemainingColumn(),
            console=console,
        )
        self._task = self._bar.add_task(name, total=total, fps="-")

    def advance(self, frame: SegmentedFrame) -> None:
        self.done += 1
        self._computed += not frame.recalled
        elapsed = time.perf_counter() - self._began
        fps = f"{self._computed / elapsed:.2f}" if self._computed else "-"
        self._bar.update(self._task, advance=1, fps=fps)

    def __enter__(self) -> _FrameProgress:
        self._began = time.perf_counter()
        self._bar.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._bar.__exit__(*exc_info)
