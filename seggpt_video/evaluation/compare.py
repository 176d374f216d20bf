"""Two evaluations side by side: which sequences got better or worse, and by how much.

Each side is an ``eval -o`` folder (its ``per-sequence_results-<split>.csv``) or such a CSV
itself. The CSV's rows are objects (``<sequence>_<id>``), as the official evaluation names them;
a row is compared when both sides have it. Values are the CSV's (three decimals), so a change
below 0.001 is no change.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from seggpt_video.errors import UserError
from seggpt_video.evaluation.scoring import SEQUENCE_COLUMNS

RESULTS_GLOB = "per-sequence_results-*.csv"
UNCHANGED = 0.0005
"""The CSVs have three decimals: a smaller J&F change is no change."""


@dataclass(frozen=True)
class SequenceResult:
    """One row of a per-sequence CSV: J-Mean and F-Mean of one object."""

    name: str
    j: float
    f: float

    @property
    def j_and_f(self) -> float:
        return (self.j + self.f) / 2.0


@dataclass(frozen=True)
class Change:
    """One row present on both sides; deltas are B minus A."""

    name: str
    a: SequenceResult
    b: SequenceResult

    @property
    def delta_j_and_f(self) -> float:
        return self.b.j_and_f - self.a.j_and_f

    @property
    def delta_j(self) -> float:
        return self.b.j - self.a.j

    @property
    def delta_f(self) -> float:
        return self.b.f - self.a.f

    @property
    def verdict(self) -> str:
        """``better``, ``worse``, ``same`` (a J&F change within ``UNCHANGED``) or ``n/a``.

        ``n/a``: a side has no number (a sequence without a scored frame).
        """
        change = self.delta_j_and_f
        if math.isnan(change):
            return "n/a"
        if change > UNCHANGED:
            return "better"
        if change < -UNCHANGED:
            return "worse"
        return "same"


@dataclass(frozen=True)
class Comparison:
    """The rows both sides share, best improvement first, and the rows only one side has."""

    label_a: str
    label_b: str
    rows: list[Change]
    only_a: list[str]
    only_b: list[str]

    @property
    def n_better(self) -> int:
        return sum(row.verdict == "better" for row in self.rows)

    @property
    def n_worse(self) -> int:
        return sum(row.verdict == "worse" for row in self.rows)

    @property
    def mean_a(self) -> float:
        """A's mean J&F over the rows both sides have a number for."""
        return _mean(row.a.j_and_f for row in self.rows if row.verdict != "n/a")

    @property
    def mean_b(self) -> float:
        """B's mean J&F over the same rows as ``mean_a``."""
        return _mean(row.b.j_and_f for row in self.rows if row.verdict != "n/a")


def results_csv(path: Path, split: str | None = None) -> Path:
    """The per-sequence CSV that ``path`` is or holds (``--split`` picks one of several)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    if path.is_file():
        return path
    if split is not None:
        found = path / f"per-sequence_results-{split}.csv"
        if not found.is_file():
            raise UserError(f"{found}: no such file (eval writes it for split {split})")
        return found
    candidates = sorted(path.glob(RESULTS_GLOB))
    if not candidates:
        raise UserError(f"{path}: no {RESULTS_GLOB} here; is this an eval -o folder?")
    if len(candidates) > 1:
        names = ", ".join(candidate.name for candidate in candidates)
        raise UserError(f"{path}: several results ({names}); name the CSV itself or its split")
    return candidates[0]


def read_sequence_results(path: Path) -> dict[str, SequenceResult]:
    """Rows of a per-sequence CSV (columns Sequence, J-Mean, F-Mean) by name.

    Empty values (NaN: a sequence without a scored frame) are kept as NaN.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:  # a spreadsheet's BOM too
            reader = csv.DictReader(handle)
            missing = [c for c in SEQUENCE_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                found = ", ".join(reader.fieldnames or []) or "none"
                raise UserError(
                    f"{path}: not a per-sequence results CSV (columns: {found}; expected "
                    f"{', '.join(SEQUENCE_COLUMNS)})"
                )
            results = {}
            for line, row in enumerate(reader, start=2):
                name = row["Sequence"]
                results[name] = SequenceResult(
                    name, _number(row["J-Mean"], path, line), _number(row["F-Mean"], path, line)
                )
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or "not UTF-8 text"
        raise UserError(f"{path}: cannot read the results ({reason})") from None
    if not results:
        raise UserError(f"{path}: no sequences in the results")
    return results


def compare_results(
    a: Path, b: Path, split: str | None = None, labels: tuple[str, str] | None = None
) -> Comparison:
    """Compare two eval folders or per-sequence CSVs; UserError when they share no sequence."""
    path_a, path_b = results_csv(a, split), results_csv(b, split)
    results_a, results_b = read_sequence_results(path_a), read_sequence_results(path_b)
    common = [name for name in results_a if name in results_b]
    if not common:
        raise UserError(f"{path_b}: no sequence in common with {path_a}")
    rows = [Change(name, results_a[name], results_b[name]) for name in common]
    rows.sort(key=lambda row: _sort_key(row.delta_j_and_f), reverse=True)
    label_a, label_b = labels if labels is not None else (_label(Path(a)), _label(Path(b)))
    if label_a == label_b:
        label_a, label_b = str(path_a), str(path_b)
    return Comparison(
        label_a,
        label_b,
        rows,
        only_a=[name for name in results_a if name not in results_b],
        only_b=[name for name in results_b if name not in results_a],
    )


def _number(text: str, path: Path, line: int) -> float:
    if text.strip() == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise UserError(f"{path}: line {line}: {text!r} is not a number") from None


def _label(path: Path) -> str:
    """A short name for a side: the folder's name (or the CSV's folder's name)."""
    return (path.parent if path.suffix == ".csv" else path).resolve().name or str(path)


def _sort_key(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def _mean(values) -> float:
    kept = list(values)
    return sum(kept) / len(kept) if kept else math.nan
