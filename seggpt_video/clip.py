"""One clip from its files to its outputs: what `run` does, and `demo` and `batch` per clip.

The video is probed and every mask and example checked before the model runs (a bad frame
number or mask size fails in a second, not after the whole video); the output folder is checked,
its settings file written or compared, and the clip goes through
:func:`seggpt_video.pipeline.segment_video` with a :class:`RunState`, so a re-run into the same
folder resumes where the last one stopped.

Masks and examples come as the CLI gives them ('FRAME:FILE', 'IMAGE:MASK') or as the Python API
does (frame -> path or array; (image, mask) pairs of paths or arrays).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from seggpt_video.engine import Example, SegmentedFrame, Segmenter, SegmenterOptions
from seggpt_video.errors import UserError
from seggpt_video.io.masks import read_mask, require_objects
from seggpt_video.io.state import RunState, record_settings
from seggpt_video.io.video import (
    FrameArrays,
    FrameRange,
    FrameStream,
    VideoSource,
    check_rgb,
    open_video,
    read_image,
)
from seggpt_video.io.writers import make_writers
from seggpt_video.pipeline import RunReport, segment_video
from seggpt_video.refine import refine_record

MaskInput = str | Path | np.ndarray
"""A mask as the API takes it: a file (palette, 0/255 or RGB PNG) or (H, W) uint8 object ids."""
ImageInput = str | Path | np.ndarray
"""An image as the API takes it: a file or (H, W, 3) uint8 RGB."""

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


def parse_example(value: str) -> tuple[Path, Path]:
    """'IMAGE:MASK' -> (image, mask). A path may hold ':': the value is split at the first ':'
    whose two sides are existing files, else at the first ':' (the missing file is named)."""
    cuts = [i for i, char in enumerate(value) if char == ":"]
    if not cuts:
        raise UserError(f"--example {value}: expected IMAGE:MASK (an image and its mask)")
    for cut in cuts:
        if Path(value[:cut]).is_file() and Path(value[cut + 1 :]).is_file():
            return Path(value[:cut]), Path(value[cut + 1 :])
    return Path(value[: cuts[0]]), Path(value[cuts[0] + 1 :])


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
    """An opened clip: its frames (the chosen range), its annotations, examples and objects.

    annotations: frame index within the range -> (H, W) uint8 object ids. masks: how each
    annotation was given ('FRAME:FILE', or 'FRAME:array:DIGEST' for an array). examples: the
    prompts from outside the video; example_records say what they were, by content.
    video_record: how run.json names a video given as arrays (None: the path). warnings: what
    the reader reported (e.g. a truncated file), for the caller to show.
    """

    source: VideoSource
    annotations: dict[int, np.ndarray]
    object_ids: list[int]
    video: Path
    masks: list[str]
    frames: tuple[int, int] | None = None
    warnings: list[str] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    example_records: list[dict] = field(default_factory=list)
    video_record: str | None = None

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> Clip:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_clip(
    video: Path | str | Sequence[np.ndarray] | Iterable[np.ndarray] | VideoSource,
    masks: Sequence[str] | Mapping[int, MaskInput] | None = None,
    frames: str | tuple[int, int | None] | None = None,
    resize_mask: bool = False,
    backend: str = "auto",
    examples: Sequence[str] | Sequence[tuple[ImageInput, MaskInput]] | None = None,
) -> Clip:
    """Open a video (file, frame folder or frames as arrays) and read its masks and examples.

    masks: 'FILE' / 'FRAME:FILE' strings, or frame -> file or (H, W) uint8 ids. examples:
    'IMAGE:MASK' strings or (image, mask) pairs. frames: 'START:END' or (start, end) to segment
    only that part (the first mask then annotates START, and FRAME numbers are the video's own).
    Without examples the first frame needs a mask. Every check that needs no model is made here.
    """
    masks = masks if masks is not None else []
    if not masks and not examples:
        raise UserError(
            f"{_describe(video)}: no mask and no example given; the first frame needs a mask "
            "(--mask FILE), or give an example from outside the video (--example IMAGE:MASK)"
        )
    outside, example_records = read_examples(examples or [])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source, video_record = _open_source(video, backend)
    try:
        span = None
        if frames is not None:
            if source.info.num_frames < 0:
                raise UserError("frames: a stream of frames cannot be cut; pass a list instead")
            start, end = parse_frame_range(frames) if isinstance(frames, str) else frames
            if start < 0 or (end is not None and end <= start):
                raise UserError(f"frames {frames}: expected 0 <= start < end")
            source = FrameRange(source, start, end or source.info.num_frames)
            span = (start, start + source.info.num_frames)
        annotations, described = _read_annotations(
            masks, source, span, resize_mask, need_first=not outside
        )
    except BaseException:
        source.close()
        raise
    given = [*annotations.values(), *(example.labels for example in outside)]
    ids = sorted({int(i) for labels in given for i in np.unique(labels)} - {0})
    notes = [str(w.message) for w in caught]
    path = Path(video) if isinstance(video, (str, Path)) else source.info.path
    return Clip(
        source, annotations, ids, path, described, span, notes, outside,
        example_records, video_record,
    )  # fmt: skip


def _describe(video: object) -> str:
    return str(video) if isinstance(video, (str, Path)) else "the video"


def _open_source(video: object, backend: str) -> tuple[VideoSource, str | None]:
    """The frames to read, and how run.json names them when they are not a file (by content
    for arrays, so that other frames into the same folder are other settings)."""
    if isinstance(video, VideoSource):
        return video, None
    if isinstance(video, (str, Path)):
        return open_video(video, backend=backend), None
    if isinstance(video, np.ndarray) and video.ndim == 4:
        video = list(video)
    if isinstance(video, Sequence):
        source = FrameArrays(video)
        digest = hashlib.sha256()
        for _, frame in source.iter_frames():
            digest.update(frame.tobytes())
        return source, f"arrays:{source.info.num_frames}:{digest.hexdigest()[:16]}"
    if isinstance(video, Iterable):
        return FrameStream(video), "stream"
    raise UserError(
        f"video: expected a path, a list of (H, W, 3) uint8 frames or an iterable of them, got "
        f"{type(video).__name__}"
    )


def read_examples(
    examples: Sequence[str] | Sequence[tuple[ImageInput, MaskInput]],
) -> tuple[list[Example], list[dict]]:
    """Each example read and checked (the image, a mask of its size that shows an object), and
    what run.json records of it: the files and a digest of their content."""
    read, records = [], []
    for number, given in enumerate(examples, start=1):
        if isinstance(given, str):
            given = parse_example(given)
        if not isinstance(given, (tuple, list)) or len(given) != 2:
            raise UserError(f"example {number}: expected an (image, mask) pair")
        image_in, mask_in = given
        what = f"example {number}"
        if isinstance(image_in, np.ndarray):
            image = check_rgb(image_in, f"{what} image")
        else:
            image = read_image(image_in, what="example image")
        if isinstance(mask_in, np.ndarray):
            labels = _check_labels(mask_in, f"{what} mask")
        else:
            labels = read_mask(mask_in)
        mask_name = str(mask_in) if not isinstance(mask_in, np.ndarray) else f"{what} mask"
        if labels.shape != image.shape[:2]:
            image_name = image_in if not isinstance(image_in, np.ndarray) else f"{what} image"
            raise UserError(
                f"{mask_name}: the mask is {labels.shape[1]}x{labels.shape[0]} but its image "
                f"{image_name} is {image.shape[1]}x{image.shape[0]} (width x height)"
            )
        require_objects(labels, mask_name)
        digest = hashlib.sha256(image.tobytes() + labels.tobytes()).hexdigest()[:16]
        records.append({"image": _name(image_in), "mask": _name(mask_in), "content": digest})
        read.append(Example(np.ascontiguousarray(image), np.ascontiguousarray(labels)))
    return read, records


def _name(given: object) -> str:
    return "array" if isinstance(given, np.ndarray) else str(Path(given).resolve())


def _check_labels(labels: object, what: str) -> np.ndarray:
    """(H, W) uint8 object ids, or UserError naming ``what``."""
    if not isinstance(labels, np.ndarray) or labels.ndim != 2 or labels.dtype != np.uint8:
        described = (
            f"{labels.dtype} {labels.shape}" if isinstance(labels, np.ndarray) else type(labels)
        )
        raise UserError(f"{what}: expected (H, W) uint8 object ids, got {described}")
    return labels


def _read_annotations(
    masks: Sequence[str] | Mapping[int, MaskInput],
    source: VideoSource,
    span: tuple[int, int] | None,
    resize: bool,
    need_first: bool = True,
) -> tuple[dict[int, np.ndarray], list[str]]:
    """Frame within the range -> ids, and how each was given (what run.json records)."""
    info = source.info
    offset = span[0] if span else 0
    known_length = info.num_frames >= 0
    last = offset + info.num_frames - 1
    if isinstance(masks, Mapping):
        given = [(int(frame), mask, None) for frame, mask in masks.items()]
    else:
        given = [(*parse_annotation(value), value) for value in masks]
    annotations: dict[int, np.ndarray] = {}
    described: list[str] = []
    for frame, mask, value in given:
        frame = offset if frame is None else frame
        name = f"mask for frame {frame}" if isinstance(mask, np.ndarray) else str(mask)
        if frame < offset or (known_length and frame > last):
            where = f"{offset} to {last}" if known_length else f"from {offset}"
            raise UserError(
                f"{value or name}: frame {frame} is outside the frames segmented ({where})"
            )
        if frame - offset in annotations:
            raise UserError(f"{value or name}: frame {frame} is annotated twice")
        size = (info.height, info.width)
        if isinstance(mask, np.ndarray):
            labels = _check_labels(mask, name)
            if labels.shape != size:
                raise UserError(
                    f"{name}: the mask is {labels.shape[1]}x{labels.shape[0]} but the video is "
                    f"{info.width}x{info.height} (width x height)"
                )
            value = f"{frame}:array:{hashlib.sha256(labels.tobytes()).hexdigest()[:16]}"
        else:
            labels = read_mask(mask, size=size, resize=resize)
            value = value or f"{frame}:{mask}"
        require_objects(labels, name)
        annotations[frame - offset] = labels
        described.append(value)
    if need_first and 0 not in annotations:
        first = described[0] if described else "the video"
        raise UserError(
            f"{first}: frame {offset}, the first frame segmented, needs a mask (--mask FILE) "
            "or an example (--example IMAGE:MASK)"
        )
    return annotations, described


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


class RunChoices(Protocol):
    """What run.json records of the segmenter: the model, its precision, the options."""

    model_name: str
    dtype_name: str
    task: str
    options: SegmenterOptions


def run_settings(clip: Clip, segmenter: RunChoices, prompt_file: Path | None = None) -> dict:
    """What makes a run's masks what they are: a folder holding other settings is refused.

    Needs no loaded model, so `run` compares it with the folder's before loading one.
    """
    options = segmenter.options
    return {
        "video": getattr(clip, "video_record", None) or str(Path(clip.video).resolve()),
        "masks": list(clip.masks),
        "examples": list(getattr(clip, "example_records", [])),
        "frames": list(clip.frames) if clip.frames else None,
        "model": segmenter.model_name,
        "dtype": segmenter.dtype_name,
        "task": segmenter.task,
        "memory": options.memory,
        "batch_size": options.batch_size,
        "per_object": options.per_object,
        "ensemble": options.ensemble,
        "upsample": options.upsample,
        "refine": refine_record(options.refine, options.refine_settings),
        "soft": options.soft,
        "crops": options.crops,
        "prompt_file": str(prompt_file) if prompt_file else None,
    }


def segment_clip(
    clip: Clip,
    segmenter: Segmenter,
    output: Path | str,
    formats: list[str],
    *,
    overwrite: bool = False,
    restart_from: int | None = None,
    stream_object: int | None = None,
    settings: dict | None = None,
    sequence: str | None = None,
    on_frame: Callable[[SegmentedFrame], None] | None = None,
) -> RunReport:
    """Segment an opened clip into `output` ('-': the y4m stream on standard output).

    A folder output keeps its settings in run.json (refused when they differ, unless
    overwrite) and its progress in a hidden state folder: a re-run resumes, and a format added
    to a finished run is written without the model. restart_from: a correction on that frame
    (frame within the clip): the frames kept from there on are forgotten and the new settings
    recorded; frames before it are read back as they are (the caller changes no annotation
    before it).
    """
    info = clip.source.info
    state = None
    if str(output) == STDOUT:
        writers = make_writers(formats, STDOUT, info, clip.object_ids, y4m_object=stream_object)
    else:
        if info.num_frames < 0:
            raise UserError("a stream of frames cannot be written to a folder; pass a list")
        output = Path(output)
        prepare_output(output)
        settings = settings or run_settings(clip, segmenter)
        record_settings(output / SETTINGS_FILE, settings, overwrite or restart_from is not None)
        name = sequence or info.name
        state = RunState(
            RunState.folder_for(output, name),
            info,
            segmenter.predictor.size,
            soft=segmenter.options.soft,
        )
        if overwrite:
            state.clear()
        elif restart_from is not None:
            state.forget_from(restart_from)
        writers = make_writers(
            formats, output, info, clip.object_ids, sequence=name, y4m_object=stream_object
        )
    return segment_video(
        clip.source,
        clip.annotations,
        segmenter,
        writers,
        state=state,
        on_frame=on_frame,
        examples=clip.examples,
    )
