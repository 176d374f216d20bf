"""What a run keeps next to its outputs so that it can resume, whatever formats it writes.

- ``check_settings`` / ``record_settings``: the settings file of an output folder (``run.json``
  for `run`, ``predictions.json`` for `eval`): a folder made with other settings is refused.
- ``RunState``: every finished frame's object ids, at the frame's size (what the outputs show)
  and at the model's input size (what the prompt memory keeps). A resumed run reads both back,
  so its memory is the one an uninterrupted run would have had, and a format added to a finished
  run is written from them without the model.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from seggpt_video.errors import UserError
from seggpt_video.io.atomic import write_text_atomic
from seggpt_video.io.video import VideoInfo
from seggpt_video.io.writers import PalettePNGWriter

STATE_FOLDER = ".seggpt-video"


def check_settings(path: Path, settings: dict, overwrite: bool = False) -> None:
    """Refuse when `path` records other settings than these (unless overwrite)."""
    if not path.exists() or overwrite:
        return
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        earlier = None
    if earlier == settings:
        return
    changed = sorted(
        key
        for key in {*settings, *(earlier if isinstance(earlier, dict) else {})}
        if not isinstance(earlier, dict) or earlier.get(key) != settings.get(key)
    )
    raise UserError(
        f"{path}: this folder holds results made with other settings "
        f"({', '.join(changed)}); use another output folder or start afresh"
    )


def record_settings(path: Path, settings: dict, overwrite: bool = False) -> None:
    """Check (see check_settings), then record the settings a folder's results are made with."""
    check_settings(path, settings, overwrite)
    write_text_atomic(path, json.dumps(settings, indent=1, sort_keys=True) + "\n")


class RunState:
    """Each finished frame's ids, frame size and model size, as palette PNGs under `folder`.

    ``<folder>/labels/<frame>.png`` (H, W) and ``<folder>/memory/<frame>.png`` (S, S); the
    frame-size file is written last, so a frame counts as finished only when both are in place.
    """

    def __init__(self, folder: Path | str, info: VideoInfo, model_size: int) -> None:
        self.folder = Path(folder)
        self.info = info
        self._labels = PalettePNGWriter(self.folder / "labels", info)
        model_info = replace(info, width=model_size, height=model_size)
        self._memory = PalettePNGWriter(self.folder / "memory", model_info)

    @staticmethod
    def folder_for(output: Path | str, sequence: str) -> Path:
        """Where the state of `sequence`'s run into `output` lives (a hidden folder)."""
        return Path(output) / STATE_FOLDER / sequence

    def record(self, index: int, labels: np.ndarray, model_labels: np.ndarray) -> None:
        """Keep frame `index`: ids (H, W) uint8 at frame size and (S, S) uint8 at model size."""
        self._memory.write(index, None, model_labels)
        self._labels.write(index, None, labels)

    def first_unfinished(self) -> int:
        """The first frame not kept yet (the frame count when every frame is)."""
        for index in range(self.info.num_frames):
            if not (self._labels.done(index) and self._memory.done(index)):
                return index
        return self.info.num_frames

    def labels(self, index: int) -> np.ndarray:
        """Frame `index`'s ids at frame size, (H, W) uint8."""
        return self._read(self._labels, index)

    def model_labels(self, index: int) -> np.ndarray:
        """Frame `index`'s ids at the model's size, (S, S) uint8."""
        return self._read(self._memory, index)

    def clear(self) -> None:
        """Forget every kept frame (a run that starts afresh)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    @staticmethod
    def _read(store: PalettePNGWriter, index: int) -> np.ndarray:
        labels = store.read(index)
        if labels is None:
            raise UserError(f"{store.frame_path(index)}: the earlier run's frame is gone")
        return labels
