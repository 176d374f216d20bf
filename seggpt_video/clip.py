"""One clip from its files to its outputs: what `run` does, and `demo` and `batch` per clip.

The video is probed and every mask checked before the model runs (a bad frame number or mask
size fails in a second, not after the whole video); the output folder is checked, its settings
file written or compared, and the clip goes through :func:`seggpt_video.pipeline.segment_video`
with a :class:`RunState`, so a re-run into the same folder resumes where the last one stopped.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seggpt_video.engine import SegmentedFrame, Segmenter
from seggpt_video.errors import UserError
from seggpt_video.io.masks import read_mask, require_objects
from seggpt_video.io.state import RunState, record_settings
from seggpt_video.io.video import FrameRange, VideoSource, open_video
from seggpt_video.io.writers import make_writers
from seggpt_video.pipeline import RunReport, segment_video
from seggpt_video.refine import refine_record

SETTINGS_FILE = "run.json"
STDOUT = "-"


def parse_annotation(value: str) -> tuple[int | None, Path]:
    """'FILE' annotates the first frame (None); 'FRAME:FILE' annotates frame FRAME.

    A value whose part before the first ':' is not a frame number is a file name only when that
    file exists (a path may hold a ':'); otherwise it is refused as a bad frame number.
    """
    frame, sep, rest = value.partition(":")
    if not sep or Path(value).exists():
        return None, Path(value)
    text = frame.strip()
    if text.isdigit():
        return int(text), Path(rest)
    if text.startswith("-") and text[1:].isdigit():
        raise UserError(f"{value}: frame {text} is negative; frames count from 0")
    raise UserError(
        f"{value}: {text!r} is not a frame number (expected FRAME:FILE, e.g. 120:fix.png)"
    )


def parse_frame_range(text: str) -> tuple[int, int | None]:
    """'START:END' (END excluded; either may be left out) -> (start, end or None for the end)."""
    start, sep, end = text.partition(":")
    try:
        first = int(start) if start.strip() else 0
        last = int(end) if end.strip() else None
    except ValueError:
        first = last = -1
    if not sep or first < 0 or (last is not None and last <= first):
        raise UserError(
            f"frames {text!r}: expected START:END with 0 <= START < END (END excluded, "
            "either may be left out, e.g. 100:250 or 100:)"
        )
    return first, last


@dataclass
class Clip:
    """An opened clip: its frames (the chosen range), its annotations, its objects.

    annotations: frame index within the range -> (H, W) uint8 object ids. warnings: what the
    reader reported (e.g. a truncated file), for the caller to show.
    """

    source: VideoSource
    annotations: dict[int, np.ndarray]
    object_ids: list[int]
    video: Path
    masks: list[str]
    frames: tuple[int, int] | None = None
    warnings: list[str] = field(default_factory=list)

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> Clip:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_clip(
    video: Path | str,
    masks: list[str],
    frames: str | None = None,
    resize_mask: bool = False,
    backend: str = "auto",
) -> Clip:
    """Open a video (or frame folder) and read its masks ('FILE' or 'FRAME:FILE' each).

    frames: 'START:END' to segment only that part (the first mask then annotates START, and
    FRAME numbers are the video's own). Every check that needs no model is made here.
    """
    if not masks:
        raise UserError(f"{video}: no mask given; the first frame needs one")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = open_video(video, backend=backend)
    try:
        span = None
        if frames is not None:
            start, end = parse_frame_range(frames)
            source = FrameRange(source, start, end or source.info.num_frames)
            span = (start, start + source.info.num_frames)
        annotations = _read_annotations(masks, source, span, resize_mask)
    except BaseException:
        source.close()
        raise
    ids = sorted({int(i) for labels in annotations.values() for i in np.unique(labels)} - {0})
    notes = [str(w.message) for w in caught]
    return Clip(source, annotations, ids, Path(video), list(masks), span, notes)


def _read_annotations(
    masks: list[str], source: VideoSource, span: tuple[int, int] | None, resize: bool
) -> dict[int, np.ndarray]:
    info = source.info
    offset = span[0] if span else 0
    last = offset + info.num_frames - 1
    annotations: dict[int, np.ndarray] = {}
    for value in masks:
        frame, path = parse_annotation(value)
        frame = offset if frame is None else frame
        if not offset <= frame <= last:
            raise UserError(
                f"{value}: frame {frame} is outside the frames segmented ({offset} to {last})"
            )
        if frame - offset in annotations:
            raise UserError(f"{value}: frame {frame} is annotated twice")
        labels = read_mask(path, size=(info.height, info.width), resize=resize)
        require_objects(labels, path)
        annotations[frame - offset] = labels
    if 0 not in annotations:
        raise UserError(
            f"{masks[0]}: frame {offset}, the first frame segmented, needs a mask (--mask FILE)"
        )
    return annotations


def prepare_output(output: Path) -> None:
    """Create the output folder, or say in one line why it cannot be written."""
    if output.exists() and not output.is_dir():
        raise UserError(f"{output}: exists and is not a folder")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"{output}: cannot create the output folder ({error.strerror})") from None
    if not os.access(output, os.W_OK | os.X_OK):
        raise UserError(f"{output}: the output folder cannot be written")


def run_settings(clip: Clip, segmenter: Segmenter, prompt_file: Path | None = None) -> dict:
    """What makes a run's masks what they are: a folder holding other settings is refused."""
    options = segmenter.options
    return {
        "video": str(clip.video.resolve()),
        "masks": clip.masks,
        "frames": list(clip.frames) if clip.frames else None,
        "model": segmenter.predictor.name,
        "dtype": str(segmenter.predictor.dtype).removeprefix("torch."),
        "memory": options.memory,
        "batch_size": options.batch_size,
        "per_object": options.per_object,
        "ensemble": options.ensemble,
        "upsample": options.upsample,
        "refine": refine_record(options.refine, options.refine_settings),
        "soft": options.soft,
        "prompt_file": str(prompt_file) if prompt_file else None,
    }


def segment_clip(
    clip: Clip,
    segmenter: Segmenter,
    output: Path | str,
    formats: list[str],
    *,
    overwrite: bool = False,
    stream_object: int | None = None,
    settings: dict | None = None,
    sequence: str | None = None,
    on_frame: Callable[[SegmentedFrame], None] | None = None,
) -> RunReport:
    """Segment an opened clip into `output` ('-': the y4m stream on standard output).

    A folder output keeps its settings in run.json (refused when they differ, unless
    overwrite) and its progress in a hidden state folder: a re-run resumes, and a format added
    to a finished run is written without the model.
    """
    info = clip.source.info
    state = None
    if str(output) == STDOUT:
        writers = make_writers(formats, STDOUT, info, clip.object_ids, y4m_object=stream_object)
    else:
        output = Path(output)
        prepare_output(output)
        settings = settings or run_settings(clip, segmenter)
        record_settings(output / SETTINGS_FILE, settings, overwrite)
        name = sequence or info.name
        state = RunState(
            RunState.folder_for(output, name),
            info,
            segmenter.predictor.size,
            soft=segmenter.options.soft,
        )
        if overwrite:
            state.clear()
        writers = make_writers(
            formats, output, info, clip.object_ids, sequence=name, y4m_object=stream_object
        )
    return segment_video(
        clip.source, clip.annotations, segmenter, writers, state=state, on_frame=on_frame
    )
