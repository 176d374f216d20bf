"""What the studio keeps under OUT: objects, annotations (palette PNGs) and which results are stale.

One owner for that state, behind one lock: the server's request handlers and the propagation
thread both go through :class:`Project`. Every file it writes is written atomically, so Ctrl-C
at any moment leaves either the old file or the new one.

Layout: ``OUT/studio.json`` (objects, annotated frames, formats, ``stale_from``),
``OUT/annotations/<frame>.png`` (frame = the 0-based frame number, 5 digits: the names are made
here, never taken from a request) and ``OUT/results/`` (the output folder of ``write``).

``stale_from``: the first frame whose results no longer follow from the annotations (an edit at
frame N makes N and later stale; frames before N stay valid). The next propagation restarts there.
"""

from __future__ import annotations

import json
import re
import shlex
import threading
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from seggpt_video.errors import UserError
from seggpt_video.io.atomic import write_text_atomic
from seggpt_video.io.masks import (
    DAVIS_PALETTE,
    MAX_OBJECTS,
    object_ids,
    read_mask,
    write_palette_png,
)
from seggpt_video.io.video import VideoInfo
from seggpt_video.io.writers import FORMATS

STUDIO_FILE = "studio.json"
ANNOTATIONS = "annotations"
RESULTS = "results"
BASE_FORMATS = ("davis", "summary")  # every propagation writes these: the page shows them
UNDO_DEPTH = 30  # edits kept per frame for undo (in memory: a 1080p label map is 2 MB)
_ANNOTATION_NAME = re.compile(r"^(\d{5,})\.png$")
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


class NotFound(UserError):
    """An object or frame that does not exist (the server answers 404)."""


class Conflict(UserError):
    """A request that the current state refuses, e.g. a second propagation (409)."""


@dataclass
class StudioObject:
    """An object of the studio: its id is the label value in every mask, 1..255."""

    id: int
    name: str
    colour: str  # "#rrggbb", shown by the page only (output PNGs use the DAVIS palette)


def default_colour(object_id: int) -> str:
    """The DAVIS palette colour of an id, as "#rrggbb" (what the output PNGs show)."""
    red, green, blue = (int(c) for c in DAVIS_PALETTE[object_id])
    return f"#{red:02x}{green:02x}{blue:02x}"


def annotation_name(frame: int) -> str:
    """The file name of frame `frame`'s annotation (made here, never taken from a request)."""
    return f"{frame:05d}.png"


class Project:
    """The studio's state under `out` for one video of size (height, width).

    num_frames may be unknown (None) while the video is still being counted; frame checks then
    allow frame 0 only.
    """

    def __init__(self, out: Path, video: Path, height: int, width: int) -> None:
        self.out = Path(out)
        self.video = Path(video)
        self.height, self.width = height, width
        self.num_frames: int | None = None
        self.info: VideoInfo | None = None
        self.areas: dict[int, dict[int, int]] = {}  # result frame -> object id -> pixels
        self.lock = threading.RLock()
        self.objects: dict[int, StudioObject] = {}
        self.stale_from: int | None = None
        self.formats: list[str] = list(BASE_FORMATS)
        self._undo: dict[int, deque[np.ndarray | None]] = {}
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"{self.out}: exists and is not a folder")
        try:
            self.annotations_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"{self.out}: cannot create the folder ({error.strerror})") from None
        if (self.out / STUDIO_FILE).exists():
            self._load()
        else:
            self.save()  # the folder is this video's from now on

    # --- places -------------------------------------------------------------------------------

    @property
    def annotations_dir(self) -> Path:
        return self.out / ANNOTATIONS

    @property
    def results_dir(self) -> Path:
        return self.out / RESULTS

    def annotation_path(self, frame: int) -> Path:
        return self.annotations_dir / annotation_name(frame)

    # --- loading and saving -------------------------------------------------------------------

    def _load(self) -> None:
        path = self.out / STUDIO_FILE
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            video = saved["video"]
            size = (int(saved["height"]), int(saved["width"]))
            objects = [
                StudioObject(int(o["id"]), str(o["name"]), str(o["colour"]))
                for o in saved["objects"]
            ]
            stale = saved.get("stale_from")
            formats = [str(f) for f in saved.get("formats", BASE_FORMATS)]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise UserError(f"{path}: not a studio file this version can read ({error})") from None
        if video != str(self.video.resolve()) or size != (self.height, self.width):
            raise UserError(
                f"{path}: this folder holds a studio for another video ({video}); "
                "use another output folder (-o)"
            )
        self.objects = {o.id: o for o in objects}
        self.stale_from = None if stale is None else int(stale)
        self.formats = [f for f in dict.fromkeys([*BASE_FORMATS, *formats]) if f in FORMATS]

    def save(self) -> None:
        """Write studio.json atomically (caller holds the lock)."""
        state = {
            "version": 1,
            "video": str(self.video.resolve()),
            "width": self.width,
            "height": self.height,
            "num_frames": self.num_frames,
            "objects": [asdict(o) for o in sorted(self.objects.values(), key=lambda o: o.id)],
            "annotations": self.annotated_frames(),
            "stale_from": self.stale_from,
            "formats": self.formats,
        }
        write_text_atomic(self.out / STUDIO_FILE, json.dumps(state, indent=1) + "\n")

    def set_info(self, info: VideoInfo) -> None:
        """The video's frames, once counted; annotations beyond them are refused."""
        with self.lock:
            beyond = [f for f in self.annotated_frames() if f >= info.num_frames]
            if beyond:
                raise UserError(
                    f"{self.annotation_path(beyond[0])}: frame {beyond[0]} is beyond the video's "
                    f"{info.num_frames} frames"
                )
            self.info = info
            self.num_frames = info.num_frames
            self.areas = self._earlier_areas()

    def _earlier_areas(self) -> dict[int, dict[int, int]]:
        """Each result frame's object areas, from the summary.json of an earlier session."""
        try:
            summary = json.loads((self.results_dir / "summary.json").read_text(encoding="utf-8"))
            columns = {int(k): v for k, v in summary["area_pixels"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}
        areas: dict[int, dict[int, int]] = {}
        for frame in range(self.num_frames or 0):
            if not self.result_path(frame).exists():
                continue
            areas[frame] = {
                object_id: int(column[frame])
                for object_id, column in columns.items()
                if frame < len(column) and column[frame] is not None
            }
        return areas

    def result_path(self, frame: int) -> Path:
        """Where `write` puts frame `frame`'s DAVIS PNG (names made from the video's info)."""
        assert self.info is not None
        return self.results_dir / self.info.name / f"{self.info.frame_names[frame]}.png"

    def result(self, frame: int) -> np.ndarray | None:
        """Frame `frame`'s propagated ids, (H, W) uint8, or None when not computed yet."""
        if self.info is None:
            return None
        path = self.result_path(frame)
        if not path.exists():
            return None
        return read_mask(path, size=(self.height, self.width))

    def record_areas(self, frame: int, labels: np.ndarray) -> dict[int, int]:
        """Note a result frame's area per object (pixels); returns them. labels: (H, W) ids."""
        counts = np.bincount(labels.ravel(), minlength=256)
        areas = {i: int(counts[i]) for i in object_ids(labels)}
        with self.lock:
            self.areas[frame] = areas
        return areas

    def forget_areas(self, start: int) -> None:
        with self.lock:
            self.areas = {f: a for f, a in self.areas.items() if f < start}

    # --- checks ---------------------------------------------------------------------------------

    def check_frame(self, frame: int) -> int:
        """The frame number, or NotFound when it is not a frame of the video."""
        if self.num_frames is None:
            if frame != 0:
                raise Conflict(f"frame {frame}: the video's frames are still being counted")
            return frame
        if not 0 <= frame < self.num_frames:
            raise NotFound(
                f"frame {frame}: out of range (the video has {self.num_frames} frames, "
                f"0 to {self.num_frames - 1})"
            )
        return frame

    def check_object(self, object_id: int) -> StudioObject:
        if object_id not in self.objects:
            known = ", ".join(map(str, sorted(self.objects))) or "none yet"
            raise NotFound(f"object {object_id}: no such object (objects: {known})")
        return self.objects[object_id]

    # --- objects --------------------------------------------------------------------------------

    def add_object(self, name: str | None = None, colour: str | None = None) -> StudioObject:
        with self.lock:
            if len(self.objects) >= MAX_OBJECTS:
                raise Conflict(f"at most {MAX_OBJECTS} objects")
            new_id = next(i for i in range(1, 256) if i not in self.objects)
            obj = StudioObject(new_id, _name(name, new_id), _colour(colour, new_id))
            self.objects[new_id] = obj
            self.save()
            return obj

    def update_object(
        self, object_id: int, name: str | None = None, colour: str | None = None
    ) -> StudioObject:
        with self.lock:
            obj = self.check_object(object_id)
            if name is not None:
                obj.name = _name(name, object_id)
            if colour is not None:
                obj.colour = _colour(colour, object_id)
            self.save()
            return obj

    def remove_object(self, object_id: int) -> None:
        """Forget an object and erase it from every annotation (their results become stale)."""
        with self.lock:
            self.check_object(object_id)
            for frame in self.annotated_frames():
                labels = self.annotation(frame)
                if labels is not None and (labels == object_id).any():
                    edited = labels.copy()
                    edited[edited == object_id] = 0
                    self._store(frame, edited, undoable=False)
            del self.objects[object_id]
            self.save()

    # --- annotations ----------------------------------------------------------------------------

    def annotated_frames(self) -> list[int]:
        """Frames with an annotation file, ascending."""
        frames = []
        for path in self.annotations_dir.iterdir():
            match = _ANNOTATION_NAME.match(path.name)
            if match:
                frames.append(int(match.group(1)))
        return sorted(frames)

    def annotation(self, frame: int) -> np.ndarray | None:
        """Frame `frame`'s annotation, (H, W) uint8 object ids, or None."""
        path = self.annotation_path(frame)
        if not path.exists():
            return None
        return read_mask(path, size=(self.height, self.width))

    def set_annotation(self, frame: int, labels: np.ndarray, *, new_objects: bool = False) -> None:
        """Make `labels` (H, W) uint8 ids frame `frame`'s annotation (all zero: remove it).

        new_objects: ids that are not objects yet become new objects (an imported mask);
        otherwise they are refused.
        """
        with self.lock:
            self.check_frame(frame)
            if labels.shape != (self.height, self.width):
                raise UserError(
                    f"the mask is {labels.shape[1]}x{labels.shape[0]} but the video is "
                    f"{self.width}x{self.height} (width x height)"
                )
            unknown = [i for i in object_ids(labels) if i not in self.objects]
            if unknown and not new_objects:
                raise NotFound(f"object {unknown[0]}: no such object")
            if len(self.objects) + len(unknown) > MAX_OBJECTS:
                raise Conflict(f"the mask holds more objects than the {MAX_OBJECTS} allowed")
            for object_id in unknown:
                self.objects[object_id] = StudioObject(
                    object_id, _name(None, object_id), default_colour(object_id)
                )
            self._store(frame, labels.astype(np.uint8, copy=False), undoable=True)
            self.save()

    def undo(self, frame: int) -> bool:
        """Take back the last edit of frame `frame`; False when there is none to take back."""
        with self.lock:
            self.check_frame(frame)
            history = self._undo.get(frame)
            if not history:
                return False
            previous = history.pop()
            self._write(frame, previous)
            self.save()
            return True

    def _store(self, frame: int, labels: np.ndarray, undoable: bool) -> None:
        before = self.annotation(frame)
        if undoable:
            self._undo.setdefault(frame, deque(maxlen=UNDO_DEPTH)).append(before)
        else:
            self._undo.pop(frame, None)
        self._write(frame, labels if labels.any() else None)

    def _write(self, frame: int, labels: np.ndarray | None) -> None:
        """The annotation file of `frame` becomes `labels` (None: removed); results go stale.

        Staleness is saved first: a kill between the two saves leaves results marked stale that
        are not, never the reverse (run.json names annotations by path, not content).
        """
        self.mark_stale(frame)
        self.save()
        path = self.annotation_path(frame)
        if labels is None:
            path.unlink(missing_ok=True)
        else:
            write_palette_png(path, labels)

    def mark_stale(self, frame: int) -> None:
        """Results from `frame` on no longer follow from the annotations."""
        with self.lock:
            if self.stale_from is None or frame < self.stale_from:
                self.stale_from = frame

    def clear_stale(self, through: int | None = None) -> None:
        """Results are current again (through: up to that frame only, after a partial run)."""
        with self.lock:
            if through is None or (self.stale_from is not None and through >= self.stale_from):
                self.stale_from = None
            self.save()

    # --- what run would be given ---------------------------------------------------------------

    def masks(self) -> dict[int, Path]:
        """The annotations as ``write`` takes them: frame -> palette PNG path."""
        return {frame: self.annotation_path(frame) for frame in self.annotated_frames()}

    def command(
        self, model_options: list[str], formats: list[str] | None = None, examples: list[str] = ()
    ) -> str:
        """The ``seggpt-video run`` command that writes the same label files as the studio."""
        words = ["seggpt-video", "run", str(self.video)]
        for frame, path in self.masks().items():
            words += ["--mask", f"{frame}:{path}"]
        for example in examples:
            words += ["--example", example]
        words += ["-o", str(self.results_dir)]
        for name in formats or self.formats:
            words += ["-f", name]
        words += model_options
        return shlex.join(words)


def _name(name: str | None, object_id: int) -> str:
    if name is None:
        return f"object {object_id}"
    if not isinstance(name, str):
        raise UserError("name: must be a string")
    name = " ".join(name.split())[:80]
    return name or f"object {object_id}"


def _colour(colour: str | None, object_id: int) -> str:
    if colour is None:
        return default_colour(object_id)
    if not isinstance(colour, str) or not _COLOUR.match(colour):
        raise UserError(f"colour {colour!r}: expected #rrggbb")
    return colour.lower()
