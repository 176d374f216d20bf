"""``seggpt-video run``: a video and its first-frame mask in, every frame's masks out."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from seggpt_video.cli.app import app
from seggpt_video.cli.options import Checkpoint, Device, Dtype, ModelName
from seggpt_video.engine import Segmenter, SegmenterOptions
from seggpt_video.errors import UserError
from seggpt_video.io.atomic import atomic_path
from seggpt_video.io.masks import read_mask, require_objects
from seggpt_video.io.video import open_video
from seggpt_video.io.writers import make_writers
from seggpt_video.pipeline import segment_video
from seggpt_video.predictor import load_predictor

# Progress and messages go to stderr: stdout may carry the masks (``-o -``).
console = Console(stderr=True)
DEFAULT_FORMATS = ["davis", "overlay", "summary"]
SETTINGS_FILE = "run.json"


def parse_mask_option(value: str) -> tuple[int, Path]:
    """'FILE' annotates frame 0; 'FRAME:FILE' annotates frame FRAME."""
    frame, sep, rest = value.partition(":")
    if sep and frame.strip().isdigit():
        return int(frame), Path(rest)
    return 0, Path(value)


def read_annotations(
    masks: list[str], size: tuple[int, int], resize: bool
) -> tuple[dict[int, object], list[int]]:
    """Annotated frames and the object ids over all of them; each file is checked."""
    annotations = {}
    for value in masks:
        frame, path = parse_mask_option(value)
        if frame in annotations:
            raise UserError(f"{path}: frame {frame} is annotated twice")
        labels = read_mask(path, size=size, resize=resize)
        require_objects(labels, path)
        annotations[frame] = labels
    if 0 not in annotations:
        raise UserError(f"{masks[0]}: the first frame (0) needs a mask; give --mask FILE")
    ids = sorted({int(i) for labels in annotations.values() for i in set(labels.ravel())} - {0})
    return annotations, ids


def check_settings(output: Path, settings: dict, overwrite: bool) -> None:
    """Refuse to resume into a folder that holds a run made with other settings."""
    path = output / SETTINGS_FILE
    if path.exists() and not overwrite:
        try:
            earlier = json.loads(path.read_text())
        except ValueError:
            earlier = None
        if earlier != settings:
            changed = sorted(
                k
                for k in settings
                if not isinstance(earlier, dict) or earlier.get(k) != settings[k]
            )
            raise UserError(
                f"{path}: this folder holds a run with other settings ({', '.join(changed)}); "
                "use another --output or --overwrite"
            )
    output.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as partial:
        partial.write_text(json.dumps(settings, indent=1) + "\n")


@app.command()
def run(
    video: Annotated[
        Path, typer.Argument(help="Video file (mp4, mov, mkv, webm, avi) or frame folder.")
    ],
    mask: Annotated[
        list[str],
        typer.Option(
            "--mask",
            help="First-frame mask (palette, 0/255 grayscale or RGB PNG). FRAME:FILE annotates a "
            "later frame (an object that appears later, or a correction); repeat as needed.",
        ),
    ],
    output: Annotated[
        str, typer.Option("--output", "-o", help="Output folder, or - to stream mattes to stdout.")
    ] = "seggpt-out",
    formats: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            "-f",
            help="davis, youtube-vos, overlay, matte, prores, y4m, summary; repeat for several. "
            "Default: davis, overlay, summary.",
        ),
    ] = None,
    memory: Annotated[
        int, typer.Option(help="Most recent predicted frames used as prompts (paper's best: 8).")
    ] = 8,
    batch_size: Annotated[
        int, typer.Option(help="Frames per model call; they share the prompt memory.")
    ] = 1,
    ensemble: Annotated[
        str,
        typer.Option(help="feature (averaged in attention) or spatial (prompts tiled in a grid)."),
    ] = "feature",
    per_object: Annotated[
        bool, typer.Option(help="One pass per object, white on black: slower, no colour mix-ups.")
    ] = False,
    prompt_file: Annotated[
        Path | None,
        typer.Option(help="A tuned prompt from `seggpt-video tune`, used for every frame."),
    ] = None,
    resize_mask: Annotated[
        bool, typer.Option(help="Resize masks whose size differs from the video's (nearest).")
    ] = False,
    backend: Annotated[str, typer.Option(help="Video decoder: auto, decord or pyav.")] = "auto",
    overwrite: Annotated[
        bool, typer.Option(help="Start afresh instead of resuming an earlier run in --output.")
    ] = False,
    model: ModelName = None,
    checkpoint: Checkpoint = None,
    device: Device = "auto",
    dtype: Dtype = "auto",
) -> None:
    """Segment the objects of the first-frame mask through the whole video."""
    formats = formats or (["matte"] if output == "-" else DEFAULT_FORMATS)
    if output == "-":
        if set(formats) - {"matte", "y4m"}:
            raise UserError("-o -: only matte (as YUV4MPEG2) can be streamed to standard output")
        formats = ["y4m"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = open_video(video, backend=backend)
    for warning in caught:
        console.print(f"[yellow]warning:[/] {warning.message}", highlight=False)
    with source:
        info = source.info
        annotations, object_ids = read_annotations(mask, (info.height, info.width), resize_mask)
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
            ensemble=ensemble,
        )
        segmenter = Segmenter(predictor, options)
        if output != "-":
            settings = {
                "video": str(Path(video).resolve()),
                "masks": [str(v) for v in mask],
                "model": predictor.name,
                "memory": memory,
                "batch_size": batch_size,
                "per_object": per_object,
                "ensemble": ensemble,
                "prompt_file": str(prompt_file) if prompt_file else None,
                "dtype": str(predictor.dtype),
            }
            check_settings(Path(output), settings, overwrite)
        writers = make_writers(formats, output, info, object_ids)
        console.print(
            f"{info.name}: {info.num_frames} frames {info.width}x{info.height} "
            f"@ {info.fps:.3g} fps "
            f"({info.backend}); {len(object_ids)} object(s); model {predictor.name} on "
            f"{predictor.device} {str(predictor.dtype).removeprefix('torch.')}",
            highlight=False,
        )
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[fps]} fps"),
            TimeRemainingColumn(),
            console=console,
        )
        with progress:
            task = progress.add_task(info.name, total=info.num_frames, fps="-")
            report = None

            def advance(index: int) -> None:
                done = progress.tasks[0].completed + 1
                elapsed = progress.tasks[0].elapsed or 0
                fps = f"{done / elapsed:.2f}" if elapsed else "-"
                progress.update(task, advance=1, fps=fps)

            report = segment_video(
                source, annotations, segmenter, writers, resume=not overwrite, on_frame=advance
            )
    resumed = f", {report.resumed} resumed from an earlier run" if report.resumed else ""
    console.print(
        f"done: {report.frames} frames{resumed}, {report.frames_per_second:.2f} frames/s; "
        f"outputs in {output if output != '-' else 'standard output'}",
        highlight=False,
    )
