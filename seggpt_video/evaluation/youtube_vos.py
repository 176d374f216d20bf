"""YouTube-VOS submissions: the zip the challenge server scores (no ground truth is public).

The server wants ``Annotations/<video>/<frame>.png`` for every frame of every video of the
split, palette PNGs whose indices are the object ids of ``meta.json``, zipped with
``Annotations/`` at the root of the archive.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from seggpt_video.errors import UserError
from seggpt_video.evaluation.datasets import Benchmark
from seggpt_video.io.atomic import atomic_path


def missing_masks(benchmark: Benchmark, predictions: Path) -> list[Path]:
    """Masks the submission needs that ``predictions/<video>/<frame>.png`` does not have."""
    return [
        predictions / sequence.name / f"{name}.png"
        for sequence in benchmark.sequences
        for name in sequence.frame_names
        if not (predictions / sequence.name / f"{name}.png").is_file()
    ]


def write_submission(benchmark: Benchmark, predictions: Path, archive: Path) -> int:
    """Zip the masks of every frame as ``Annotations/<video>/<frame>.png``; returns the count.

    Raises UserError naming the first missing mask. The archive appears only when complete.
    """
    missing = missing_masks(benchmark, predictions)
    if missing:
        raise UserError(
            f"{missing[0]}: missing mask for the submission ({len(missing)} missing in all)"
        )
    count = 0
    # PNGs are compressed already: storing them is as small and much faster.
    with (
        atomic_path(archive) as partial,
        zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as zipped,
    ):
        for sequence in benchmark.sequences:
            for name in sequence.frame_names:
                source = predictions / sequence.name / f"{name}.png"
                zipped.write(source, f"Annotations/{sequence.name}/{name}.png")
                count += 1
    return count
