"""Benchmark readers: the files of DAVIS 2016, DAVIS 2017 and YouTube-VOS folders.

DAVIS: ``JPEGImages/<resolution>/<seq>/00000.jpg``, ``Annotations/<resolution>/<seq>/00000.png``,
``ImageSets/<year>/<split>.txt``. YouTube-VOS: ``JPEGImages/<video>/*.jpg``,
``Annotations/<video>/<frame>.png`` for each frame where an object first appears, ``meta.json``.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from seggpt_video.errors import UserError
from seggpt_video.io.masks import read_mask

VOID_LABEL = 255
"""Palette index DAVIS 2017 reserves for 'void'; the official scoring treats it as background."""

DATASET_KINDS = ("davis2017", "davis2016", "youtube-vos")


def read_labels_many(paths: list[Path], threads: int = 4) -> Iterator[np.ndarray]:
    """Decode many masks as object ids on a few threads (PIL releases the GIL while decoding).

    Yields them in order as soon as each is ready, with at most ``2 * threads`` decoded or
    decoding ahead of the consumer: its work on one mask overlaps the decoding of the next,
    and memory stays bounded. Yields (H, W) uint8 arrays, read by
    ``seggpt_video.io.masks.read_mask``.
    """
    if threads <= 1 or len(paths) < 2:
        yield from map(read_mask, paths)
        return
    ahead = 2 * threads
    with ThreadPoolExecutor(max_workers=threads) as pool:
        pending = deque(pool.submit(read_mask, path) for path in paths[:ahead])
        for path in paths[ahead:]:
            done = pending.popleft()
            pending.append(pool.submit(read_mask, path))
            yield done.result()
        while pending:
            yield pending.popleft().result()


@dataclass(frozen=True)
class Sequence:
    """One video of a benchmark: its frames (sorted), its masks, and which masks are given.

    ``annotated`` maps frame index -> mask PNG: every frame for DAVIS train/val (the ground
    truth), only the frames where an object first appears for YouTube-VOS. ``given`` lists
    the frames whose masks a method receives: frame 0 for DAVIS, every annotated frame for
    YouTube-VOS.
    """

    name: str
    frames: tuple[Path, ...]
    annotated: dict[int, Path] = field(hash=False)
    given: tuple[int, ...] = (0,)

    @property
    def frame_names(self) -> list[str]:
        """File stems of the frames, e.g. ``00000``."""
        return [frame.stem for frame in self.frames]

    def iter_images(self) -> Iterator[np.ndarray]:
        """Frames as (H, W, 3) uint8 RGB, read one at a time."""
        for path in self.frames:
            try:
                with Image.open(path) as image:
                    yield np.asarray(image.convert("RGB"))
            except OSError as error:
                raise UserError(f"{path}: cannot read frame of {self.name} ({error})") from None

    def prompts(self) -> dict[int, np.ndarray]:
        """The given masks, as the propagation's prompts: frame index -> (H, W) uint8 ids."""
        return {index: read_mask(self.annotated[index]) for index in self.given}


@dataclass(frozen=True)
class Benchmark:
    """A benchmark split on disk: which sequences, where their frames and masks are."""

    kind: str
    root: Path
    split: str
    sequences: tuple[Sequence, ...]

    @property
    def has_ground_truth(self) -> bool:
        """Scorable here: DAVIS train/val. YouTube-VOS and DAVIS test give first masks only."""
        if self.kind == "youtube-vos":
            return False
        return all(len(sequence.annotated) > 1 for sequence in self.sequences)


def open_benchmark(
    root: Path,
    kind: str = "auto",
    split: str = "val",
    resolution: str = "480p",
    sequences: list[str] | None = None,
) -> Benchmark:
    """Read a benchmark's sequence list and file layout (no images are decoded).

    kind: ``davis2017``, ``davis2016``, ``youtube-vos`` or ``auto`` (``meta.json`` means
    YouTube-VOS, else the DAVIS year whose ``ImageSets/<year>/<split>.txt`` exists, 2017 first).
    sequences: only these (in the split's order); the others' files are not even checked.
    """
    root = Path(root)
    if not root.exists():
        raise UserError(f"{root}: dataset folder not found")
    if not root.is_dir():
        raise UserError(f"{root}: a file, not a dataset folder (DAVIS or YouTube-VOS)")
    if kind == "auto":
        kind = _detect_kind(root, split)
    if kind == "youtube-vos":
        return _open_youtube_vos(root, split, sequences)
    if kind in ("davis2016", "davis2017"):
        return _open_davis(root, kind, split, resolution, sequences)
    raise UserError(
        f"{root}: unknown dataset kind {kind!r} (choose from {', '.join(DATASET_KINDS)})"
    )


def _detect_kind(root: Path, split: str) -> str:
    if (root / "meta.json").is_file():
        return "youtube-vos"
    for year in ("2017", "2016"):
        if (root / "ImageSets" / year / f"{split}.txt").is_file():
            return f"davis{year}"
    raise UserError(
        f"{root}: no ImageSets/2017/{split}.txt, ImageSets/2016/{split}.txt or meta.json; "
        "is this a DAVIS or YouTube-VOS folder?"
    )


def _chosen(names: list[str], wanted: list[str] | None, source: Path) -> list[str]:
    """The split's names restricted to `wanted` (split order); unknown names are refused."""
    if not wanted:
        return names
    unknown = [name for name in wanted if name not in names]
    if unknown:
        raise UserError(f"{source}: no sequence {', '.join(unknown)} in this split")
    return [name for name in names if name in set(wanted)]


def _open_davis(
    root: Path, kind: str, split: str, resolution: str, wanted: list[str] | None
) -> Benchmark:
    year = kind.removeprefix("davis")
    split_file = root / "ImageSets" / year / f"{split}.txt"
    if not split_file.is_file():
        raise UserError(f"{split_file}: split file not found")
    names = _chosen(_sequence_names(split_file), wanted, split_file)
    for folder in (root / "JPEGImages" / resolution, root / "Annotations" / resolution):
        if not folder.is_dir():
            found = (
                sorted(p.name for p in folder.parent.iterdir()) if folder.parent.is_dir() else []
            )
            there = f" (resolutions here: {', '.join(found)})" if found else ""
            raise UserError(f"{folder}: no such folder; is this a DAVIS folder?{there}")
    sequences = []
    for name in names:
        image_dir = root / "JPEGImages" / resolution / name
        frames = tuple(sorted(image_dir.glob("*.jpg")))
        if not frames:
            raise UserError(f"{image_dir}: no JPEG frames for sequence {name}")
        mask_dir = root / "Annotations" / resolution / name
        if not mask_dir.is_dir():
            raise UserError(f"{mask_dir}: no annotation folder for sequence {name}")
        index_of = {frame.stem: index for index, frame in enumerate(frames)}
        annotated = {}
        for mask in sorted(mask_dir.glob("*.png")):
            if mask.stem not in index_of:
                raise UserError(
                    f"{mask}: annotation of {name} has no matching frame {mask.stem}.jpg"
                )
            annotated[index_of[mask.stem]] = mask
        if 0 not in annotated:
            raise UserError(
                f"{mask_dir / (frames[0].stem + '.png')}: sequence {name} has no first-frame mask"
            )
        sequences.append(Sequence(name, frames, annotated))
    return Benchmark(kind, root, split, tuple(sequences))


def _sequence_names(split_file: Path) -> list[str]:
    """The sequence names an ImageSets file lists, one a line; UserError for anything else."""
    try:
        text = split_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or "not UTF-8 text"
        raise UserError(f"{split_file}: cannot read the list of sequences ({reason})") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise UserError(f"{split_file}: lists no sequences")
    for name in names:
        if not _is_folder_name(name):
            raise UserError(f"{split_file}: {name!r} is not a sequence name (a folder name)")
    return names


def _is_folder_name(name: str) -> bool:
    """One folder below the dataset's, not a path that leads elsewhere."""
    return "/" not in name and "\\" not in name and name not in (".", "..")


def _is_youtube_vos_meta(videos: object) -> bool:
    """videos -> name -> {"objects": id -> {"frames": [first, ...]}}, as meta.json has it."""
    if not isinstance(videos, dict):
        return False
    for name, video in videos.items():
        if not _is_folder_name(name) or not isinstance(video, dict):
            return False
        objects = video.get("objects", {})
        if not isinstance(objects, dict):
            return False
        for info in objects.values():
            if not isinstance(info, dict) or not isinstance(info.get("frames"), list):
                return False
            if not info["frames"]:
                return False
    return True


def _open_youtube_vos(root: Path, split: str, wanted: list[str] | None) -> Benchmark:
    meta_file = root / "meta.json"
    try:
        videos = json.loads(meta_file.read_text())["videos"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"{meta_file}: not a YouTube-VOS meta.json ({error})") from None
    if not _is_youtube_vos_meta(videos):
        raise UserError(
            f"{meta_file}: not a YouTube-VOS meta.json (expected videos -> name -> objects -> "
            "id -> frames, a non-empty list)"
        )
    sequences = []
    for name in _chosen(sorted(videos), wanted, meta_file):
        frames = tuple(sorted((root / "JPEGImages" / name).glob("*.jpg")))
        if not frames:
            raise UserError(f"{root / 'JPEGImages' / name}: no JPEG frames for video {name}")
        index_of = {frame.stem: index for index, frame in enumerate(frames)}
        annotated = {}
        for object_id, info in videos[name].get("objects", {}).items():
            first = str(info["frames"][0])
            mask = root / "Annotations" / name / f"{first}.png"
            if first not in index_of:
                raise UserError(
                    f"{meta_file}: object {object_id} of {name} starts at missing frame {first}"
                )
            if not mask.is_file():
                raise UserError(f"{mask}: video {name} has no mask where object {object_id} starts")
            annotated[index_of[first]] = mask
        if not annotated:
            raise UserError(f"{meta_file}: video {name} has no annotated object")
        sequences.append(Sequence(name, frames, annotated, given=tuple(sorted(annotated))))
    return Benchmark("youtube-vos", root, split, tuple(sequences))
