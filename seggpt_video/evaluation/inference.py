"""Run the propagation engine over a benchmark and save its masks as palette PNGs.

The masks land in ``<predictions>/<sequence>/<frame>.png``, the layout every DAVIS and
YouTube-VOS tool reads. Each sequence goes through :func:`seggpt_video.pipeline.segment_video`,
the path `run` takes. A sequence whose frames are all there is not run again, so an interrupted
run resumes; ``predictions.json`` records the settings so that masks from different settings are
never mixed in one folder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from seggpt_video.engine import Example, SegmentedFrame, Segmenter
from seggpt_video.errors import UserError
from seggpt_video.evaluation.datasets import Sequence
from seggpt_video.io.video import FrameFolder
from seggpt_video.io.writers import PalettePNGWriter
from seggpt_video.pipeline import segment_video

SETTINGS_FILE = "predictions.json"


def is_predicted(sequence: Sequence, predictions: Path) -> bool:
    """True when every frame of ``sequence`` already has a mask in ``predictions``."""
    folder = predictions / sequence.name
    return all((folder / f"{name}.png").is_file() for name in sequence.frame_names)


def predict_sequence(
    segmenter: Segmenter,
    sequence: Sequence,
    predictions: Path,
    on_frame: Callable[[SegmentedFrame], None] | None = None,
    examples: list[Example] | None = None,
) -> None:
    """Propagate ``sequence``'s given masks through its frames; save every frame's mask.

    on_frame is called with each frame as its mask is saved (for progress). examples: prompts
    from outside the video for every frame (see Segmenter.propagate).
    """
    frames = FrameFolder(sequence.frames[0].parent, files=list(sequence.frames))
    writer = PalettePNGWriter(predictions / sequence.name, frames.info)
    try:
        segment_video(
            frames, sequence.prompts(), segmenter, [writer], on_frame=on_frame, examples=examples
        )
    except UserError as error:
        raise UserError(f"{sequence.name}: {error}") from None
