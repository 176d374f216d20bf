"""Try the tool end to end on a synthetic clip whose true masks are known.

The clip goes through the same path a user's video does: written as an mp4 with a first-frame
mask PNG, read back by the video reader, propagated by the engine, written by the output writers,
and scored by the evaluation code (J&F against the synthetic ground truth).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from seggpt_video.clip import open_clip
from seggpt_video.clip import segment_clip as segment_clip_files
from seggpt_video.engine import SegmentedFrame, Segmenter, SegmenterOptions
from seggpt_video.evaluation.datasets import Sequence
from seggpt_video.evaluation.scoring import score_sequence, summarize
from seggpt_video.io.atomic import atomic_path
from seggpt_video.io.masks import read_mask, write_palette_png
from seggpt_video.predictor import SegGPTPredictor
from seggpt_video.training.synthetic import make_clip


@dataclass(frozen=True)
class DemoClip:
    """Where a synthetic clip was written: the video, its first-frame mask, the true masks."""

    name: str
    video: Path
    first_mask: Path
    ground_truth: Path  # folder of <frame>.png object-id masks, one per frame


def write_video(path: Path | str, frames: np.ndarray, fps: int = 12) -> None:
    """Encode frames (T, H, W, 3) uint8 RGB as H.264 (near-lossless, yuv444p), atomically."""
    with atomic_path(path) as partial:
        with av.open(str(partial), "w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps))
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv444p"
            stream.options = {"crf": "10", "preset": "veryfast"}
            for image in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)


def write_synthetic_clip(
    output: Path | str,
    seed: int,
    num_frames: int = 40,
    height: int = 96,
    width: int = 128,
    num_objects: int = 2,
) -> DemoClip:
    """Make a synthetic clip (see :func:`make_clip`) and write it as a user would have it."""
    output = Path(output)
    name = f"synthetic-{seed}"
    frames, labels = make_clip(seed, num_frames, height, width, num_objects)
    output.mkdir(parents=True, exist_ok=True)
    video = output / f"{name}.mp4"
    write_video(video, frames)
    first_mask = output / f"{name}_mask.png"
    write_palette_png(first_mask, labels[0])
    ground_truth = output / "ground_truth" / name
    for index, ids in enumerate(labels):
        write_palette_png(ground_truth / f"{index:05d}.png", ids)
    return DemoClip(name, video, first_mask, ground_truth)


def segment_clip(
    clip: DemoClip,
    predictor: SegGPTPredictor,
    output: Path | str,
    options: SegmenterOptions | None = None,
    formats: tuple[str, ...] = ("davis", "overlay"),
    on_frame: Callable[[SegmentedFrame], None] | None = None,
) -> Path:
    """Segment the clip's video from its first-frame mask, as `run` does; returns the masks' folder.

    Writes ``<output>/<name>/<frame>.png`` (DAVIS palette) and, with "overlay", the overlay mp4.
    A re-run with other options starts afresh (a demo is never resumed across settings).
    """
    segmenter = Segmenter(predictor, options)
    with open_clip(clip.video, [str(clip.first_mask)]) as opened:
        segment_clip_files(
            opened,
            segmenter,
            output,
            list(formats),
            overwrite=True,
            sequence=clip.name,
            on_frame=on_frame,
        )
    return Path(output) / clip.name


def score_clip(clip: DemoClip, predictions: Path | str) -> dict[str, float]:
    """J&F of ``predictions/<name>/<frame>.png`` against the clip's true masks (DAVIS protocol)."""
    truth = sorted(clip.ground_truth.glob("*.png"))
    sequence = Sequence(clip.name, tuple(truth), {i: path for i, path in enumerate(truth)})
    return summarize([score_sequence(sequence, Path(predictions))]).global_scores


def copy_first_mask(clip: DemoClip, output: Path | str) -> Path:
    """The baseline that never looks at the video: frame 0's true mask written for every frame.

    Writes ``<output>/<name>/<frame>.png`` like :func:`segment_clip`; returns ``output``.
    """
    output = Path(output)
    truth = sorted(clip.ground_truth.glob("*.png"))
    first = read_mask(truth[0])
    for path in truth:
        write_palette_png(output / clip.name / path.name, first)
    return output
