"""What a run keeps next to its outputs so that it can resume, whatever formats it writes.

- ``check_settings`` / ``record_settings``: the settings file of an output folder (``run.json``
  for `run`, ``predictions.json`` for `eval`): a folder made with other settings is refused.
- ``RunState``: every finished frame's object ids, at the frame's size (what the outputs show)
  and at the model's input size (what the prompt memory keeps), and with ``--soft`` its soft
  mattes. A resumed run reads them back, so its memory is the one an uninterrupted run would have
  had, and a format added to a finished run is written from them without the model.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from seggpt_video.errors import UserError
from seggpt_video.io.atomic import atomic_path, remove_partials_in, write_text_atomic
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

    ``<folder>/labels/<frame>.png`` (H, W) and ``<folder>/memory/<frame>.png`` (S, S); with
    soft, ``<folder>/alpha/<frame>.png`` too: the soft mattes (1 + K, H, W) stacked into one 8-bit
    grayscale image ((1 + K) * H, W). The frame-size ids are written last, so a frame counts as
    finished only when every file is in place.
    """

    def __init__(
        self, folder: Path | str, info: VideoInfo, model_size: int, soft: bool = False
    ) -> None:
        self.folder = Path(folder)
        self.info = info
        self.soft = soft
        self._labels = PalettePNGWriter(self.folder / "labels", info)
        model_info = replace(info, width=model_size, height=model_size)
        self._memory = PalettePNGWriter(self.folder / "memory", model_info)
        self._alpha = self.folder / "alpha"
        if soft:
            self._alpha.mkdir(parents=True, exist_ok=True)
            remove_partials_in(self._alpha)

    @staticmethod
    def folder_for(output: Path | str, sequence: str) -> Path:
        """Where the state of `sequence`'s run into `output` lives (a hidden folder)."""
        return Path(output) / STATE_FOLDER / sequence

    def record(
        self,
        index: int,
        labels: np.ndarray,
        model_labels: np.ndarray,
        alpha: np.ndarray | None = None,
    ) -> None:
        """Keep frame `index`: ids (H, W) uint8 at frame size and (S, S) uint8 at model size,
        and, in a soft run, its soft mattes (1 + K, H, W) uint8."""
        if self.soft and alpha is None:
            raise ValueError("a soft run keeps every frame's soft mattes")
        self._memory.write(index, None, model_labels)
        if self.soft:
            with atomic_path(self._alpha_path(index)) as partial:
                Image.fromarray(alpha.reshape(-1, alpha.shape[-1])).save(partial, format="PNG")
        self._labels.write(index, None, labels)

    def first_unfinished(self) -> int:
        """The first frame not kept yet (the frame count when every frame is)."""
        for index in range(self.info.num_frames):
            finished = self._labels.done(index) and self._memory.done(index)
            if not (finished and (not self.soft or self._alpha_path(index).is_file())):
                return index
        return self.info.num_frames

    def labels(self, index: int) -> np.ndarray:
        """Frame `index`'s ids at frame size, (H, W) uint8."""
        return self._read(self._labels, index)

    def model_labels(self, index: int) -> np.ndarray:
        """Frame `index`'s ids at the model's size, (S, S) uint8."""
        return self._read(self._memory, index)

    def alpha(self, index: int) -> np.ndarray:
        """Frame `index`'s soft mattes, (1 + K, H, W) uint8 (a soft run's)."""
        path = self._alpha_path(index)
        try:
            with Image.open(path) as image:
                stacked = np.array(image, dtype=np.uint8)
        except FileNotFoundError:
            raise UserError(f"{path}: the earlier run's frame is gone") from None
        except (OSError, ValueError) as error:
            raise UserError(f"{path}: cannot read back this matte ({error})") from None
        height, width = self.info.height, self.info.width
        if stacked.ndim != 2 or stacked.shape[1] != width or stacked.shape[0] % height:
            raise UserError(f"{path}: not the soft mattes of a {width}x{height} frame")
        return stacked.reshape(-1, height, width)

    def clear(self) -> None:
        """Forget every kept frame (a run that starts afresh)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def forget_from(self, start: int) -> None:
        """Forget the kept frames from ``start`` on (a correction there): the frame-size ids
        first, so a frame interrupted halfway counts as unfinished."""
        for index in range(max(start, 0), self.info.num_frames):
            self._labels.frame_path(index).unlink(missing_ok=True)
            self._memory.frame_path(index).unlink(missing_ok=True)
            self._alpha_path(index).unlink(missing_ok=True)

    def _alpha_path(self, index: int) -> Path:
        return self._alpha / f"{self.info.frame_names[index]}.png"

    @staticmethod
    def _read(store: PalettePNGWriter, index: int) -> np.ndarray:
        labels = store.read(index)
        if labels is None:
            raise UserError(f"{store.frame_path(index)}: the earlier run's frame is gone")
        return labels
