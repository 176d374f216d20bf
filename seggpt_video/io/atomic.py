"""Atomic file output: write under a temporary name in the same folder, then rename.

An interrupted run therefore never leaves a half-written file under a final name: either the old
file is still there, or the new one is complete. Temporary names start with a dot and end in
``.partial`` so that they are hidden and easy to recognise. This is the project's one way to
write a file that must not be seen half-written: :class:`PendingFile` for output that is written
over a long time (an encoded video, a stream), :func:`atomic_path` around one save, and
:func:`write_text_atomic` for a text file.
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


def remove_partials_in(folder: Path) -> None:
    """Delete every temporary file that a killed run left in `folder`."""
    for leftover in folder.glob(f".*{PARTIAL_SUFFIX}"):
        with suppress(FileNotFoundError):
            leftover.unlink()


class PendingFile:
    """A file being written under a temporary name: commit() moves it onto `path`, or discard().

    The folder is created. Leftovers of a killed earlier writer are not touched here (another
    process may be writing the same name); writers that own their folder call remove_partials.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.partial = partial_path(self.path)

    def commit(self) -> None:
        """Replace `path` with the finished temporary file."""
        os.replace(self.partial, self.path)

    def discard(self) -> None:
        """Delete the temporary file; whatever was at `path` stays."""
        with suppress(FileNotFoundError):
            self.partial.unlink()


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces `path`, on error it is deleted."""
    pending = PendingFile(path)
    try:
        yield pending.partial
        pending.commit()
    except BaseException:
        pending.discard()
        raise


def write_text_atomic(path: Path | str, text: str) -> None:
    """Write a UTF-8 text file atomically (creating its folder)."""
    with atomic_path(path) as partial:
        partial.write_text(text, encoding="utf-8")
