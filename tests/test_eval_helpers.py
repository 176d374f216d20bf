"""Tiny DAVIS-layout datasets made on the fly for the evaluation tests (no tests here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from seggpt_video.io.masks import write_palette_png

HEIGHT, WIDTH = 24, 32


def ground_truth(sequence: str, frame: int) -> np.ndarray:
    """Object ids (H, W) uint8 of the tiny dataset's ground truth.

    ``alpha``: object 1 is a 6x8 box moving one pixel right per frame, object 2 a fixed 4x4 box.
    ``beta``: one 6x8 box, still.
    """
    labels = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    if sequence == "alpha":
        labels[4:10, 2 + frame : 10 + frame] = 1
        labels[16:20, 20:24] = 2
    else:
        labels[8:14, 10:18] = 1
    return labels


SEQUENCES = {"alpha": 6, "beta": 5}


def save_palette(path: Path, labels: np.ndarray) -> None:
    write_palette_png(path, np.asarray(labels, dtype=np.uint8))


def save_gray(path: Path, labels: np.ndarray) -> None:
    """DAVIS 2016 style: 0 background, 255 object."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.where(labels > 0, 255, 0).astype(np.uint8)).save(path)


def make_davis(root: Path, year: str = "2017", resolution: str = "480p") -> Path:
    """A DAVIS folder with the sequences of :data:`SEQUENCES` (2016: grayscale, object 1 only)."""
    rng = np.random.default_rng(0)
    names = list(SEQUENCES)
    for name, n_frames in SEQUENCES.items():
        for frame in range(n_frames):
            stem = f"{frame:05d}"
            jpeg = root / "JPEGImages" / resolution / name / f"{stem}.jpg"
            jpeg.parent.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(jpeg)
            labels = ground_truth(name, frame)
            mask = root / "Annotations" / resolution / name / f"{stem}.png"
            if year == "2016":
                save_gray(mask, labels == 1)
            else:
                save_palette(mask, labels)
    split = root / "ImageSets" / year / "val.txt"
    split.parent.mkdir(parents=True, exist_ok=True)
    split.write_text("\n".join(names) + "\n")
    return root


def write_predictions(folder: Path, predict) -> Path:
    """Save ``predict(sequence, frame) -> labels`` for every frame as palette PNGs."""
    for name, n_frames in SEQUENCES.items():
        for frame in range(n_frames):
            save_palette(folder / name / f"{frame:05d}.png", predict(name, frame))
    return folder
