"""Atomic file output: write under a temporary name in the same folder, then rename.

An interrupted run therefore never leaves a half-written file under a final name: either the old
file is still there, or the new one is complete. Temporary names start with a dot and end in
``.partial`` so that they are hidden and easy to recognise.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

PARTIAL_SUFFIX = ".partial"


def partial_path(path: Path) -> Path:
    """A fresh temporary name next to `path` (same folder, so os.replace is atomic)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}")


def remove_partials(path: Path) -> None:
    """Delete temporary files that a killed run left behind for `path`."""
    for leftover in path.parent.glob(f".{path.name}.*{PARTIAL_SUFFIX}"):
        with suppress(FileNotFoundError):
            leftover.unlink()


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces `path`, on error it is deleted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(path)
    try:
        yield partial
        os.replace(partial, path)
    except BaseException:
        with suppress(FileNotFoundError):
            partial.unlink()
        raise
