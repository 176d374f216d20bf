"""``seggpt-video compare``: two evaluations, which sequences got better or worse."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from seggpt_video.cli.app import app
from seggpt_video.errors import UserError

console = Console()
STYLES = {"better": "green", "worse": "red", "same": "", "n/a": "dim"}


@app.command()
def compare(
    a: Annotated[
        Path,
        typer.Argument(
            metavar="A", help="Before: an eval -o folder or its per-sequence_results CSV."
        ),
    ],
    b: Annotated[
        Path,
        typer.Argument(metavar="B", help="After: the same, for the other run."),
    ],
    split: Annotated[
        str | None,
        typer.Option(
            metavar="SPLIT",
            help="Which per-sequence_results-<split>.csv of a folder holding several.",
        ),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="Also draw the J&F changes as a bar chart (PNG; needs matplotlib)."
        ),
    ] = None,
) -> None:
    """Which sequences got better or worse from A to B: J&F, J and F changes (B minus A)."""
    from seggpt_video.evaluation.compare import compare_results

    if plot is not None:
        from seggpt_video.evaluation.plots import require_matplotlib

        try:
            require_matplotlib()
        except UserError as error:
            raise UserError(f"--plot: {error}") from None
    comparison = compare_results(a, b, split)
    table = Table(
        title=f"J&F per sequence: A = {comparison.label_a}, B = {comparison.label_b}",
        caption="d = B minus A; best improvement first",
        box=box.ASCII,
    )
    for column in ("Sequence", "J&F A", "J&F B", "d J&F", "d J", "d F", ""):
        table.add_column(column, justify="left" if column in ("Sequence", "") else "right")
    for row in comparison.rows:
        table.add_row(
            row.name,
            _number(row.a.j_and_f),
            _number(row.b.j_and_f),
            _signed(row.delta_j_and_f),
            _signed(row.delta_j),
            _signed(row.delta_f),
            row.verdict,
            style=STYLES[row.verdict],
        )
    console.print(table)
    counts = {verdict: 0 for verdict in STYLES}
    for row in comparison.rows:
        counts[row.verdict] += 1
    unscored = f", {counts['n/a']} without a score on a side" if counts["n/a"] else ""
    console.print(
        f"{len(comparison.rows)} sequences in common: {counts['better']} better, "
        f"{counts['worse']} worse, {counts['same']} the same{unscored}; mean J&F "
        f"{_number(comparison.mean_a)} -> {_number(comparison.mean_b)}",
        highlight=False,
    )
    for side, names in (("A", comparison.only_a), ("B", comparison.only_b)):
        if names:
            console.print(f"only in {side} (not compared): {', '.join(names)}", highlight=False)
    if plot is not None:
        from seggpt_video.evaluation.plots import plot_comparison

        console.print(f"chart saved in {plot_comparison(comparison, plot)}", highlight=False)


def _number(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.3f}"


def _signed(value: float) -> str:
    return "" if math.isnan(value) else f"{value:+.3f}"
