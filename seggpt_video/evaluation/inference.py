"""Run the propagation engine over a benchmark and save its masks as palette PNGs.

The masks land in ``<predictions>/<sequence>/<frame>.png``, the layout every DAVIS and
YouTube-VOS tool reads. A sequence whose frames are all there is not run again, so an
interrupted run resumes; ``predictions.json`` records the settings so that masks from different
settings are never mixed in one folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from seggpt_video.errors import UserError
from seggpt_video.evaluation.datasets import Sequence
from seggpt_video.io.atomic import write_text_atomic
from seggpt_video.io.masks import write_palette_png

SETTINGS_FILE = "predictions.json"


def is_predicted(sequence: Sequence, predictions: Path) -> bool:
    """True when every frame of ``sequence`` already has a mask in ``predictions``."""
    folder = predictions / sequence.name
    return all((folder / f"{name}.png").is_file() for name in sequence.frame_names)


def check_settings(predictions: Path, settings: dict) -> None:
    """Record the run's settings, or refuse when the folder holds masks from other settings."""
    path = predictions / SETTINGS_FILE
    if path.is_file():
        try:
            previous = json.loads(path.read_text())
        except ValueError:
            previous = None
        if previous != settings:
            raise UserError(
                f"{path}: these predictions were made with other settings ({previous}); "
                "choose another --output folder or delete this one"
            )
        return
    write_text_atomic(path, json.dumps(settings, indent=2, sort_keys=True) + "\n")


def predict_sequence(
    segmenter,
    sequence: Sequence,
    predictions: Path,
    on_frame: Callable[[int], None] | None = None,
) -> None:
    """Propagate ``sequence``'s annotations through its frames and save every frame's mask.

    segmenter: a ``seggpt_video.engine.Segmenter``. on_frame is called with each frame index
    as its mask is saved (for progress).
    """
    names = sequence.frame_names
    folder = predictions / sequence.name
    try:
        for index, labels in segmenter.propagate(sequence.iter_images(), sequence.prompts()):
            write_palette_png(folder / f"{names[index]}.png", labels)
            if on_frame is not None:
                on_frame(index)
    except UserError as error:
        raise UserError(f"{sequence.name}: {error}") from None
