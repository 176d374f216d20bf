"""Pictures of an evaluation: where the model fails, by sequence, by frame, and what it looks like.

``write_eval_plots`` draws, from the very per-frame J and F the CSVs are summarised from (the
scores ``scoring`` computed and cached), so a chart and the numbers never disagree:

- ``sequences.png``: each sequence's J&F, sorted, worst at the top;
- ``frames.png`` (``frames-2.png``, ... past 20 sequences): J of every scored frame, one small
  chart per sequence, a line per object;
- ``worst-frames.png``: the N frames with the lowest J over the whole dataset, each as image,
  truth and prediction side by side, and ``worst-frames.csv`` beside it listing them in order.

matplotlib is an extra (``pip install 'seggpt-video[plots]'``); it is drawn with the Agg canvas
directly, so no pyplot state or display backend is touched in the caller's process.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from seggpt_video.errors import UserError
from seggpt_video.evaluation.datasets import Sequence
from seggpt_video.evaluation.metrics import statistics
from seggpt_video.evaluation.scoring import SequenceScore
from seggpt_video.io.atomic import atomic_path, write_text_atomic
from seggpt_video.io.masks import DAVIS_PALETTE, read_mask

if TYPE_CHECKING:  # matplotlib is optional: imported only when drawing
    from matplotlib.figure import Figure

    from seggpt_video.evaluation.compare import Comparison

INSTALL_HINT = "pip install 'seggpt-video[plots]'"
WORST_DEFAULT = 12
SEQUENCES_PER_PAGE = 20
THUMB_WIDTH = 224  # pixels per panel of the worst-frame sheet (854x480 frames become 224x126)
TRUTH_COLOUR = (0, 220, 0)
PREDICTION_COLOUR = (255, 40, 40)


def require_matplotlib() -> None:
    """Raise UserError saying what to install when matplotlib is missing (before any work)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserError(f"plots need matplotlib, which is not installed: {INSTALL_HINT}") from None


@dataclass(frozen=True)
class SequenceSummary:
    """One sequence's means over its objects (each object's mean over its scored frames)."""

    sequence: str
    j: float
    f: float

    @property
    def j_and_f(self) -> float:
        return (self.j + self.f) / 2.0


@dataclass(frozen=True)
class WorstFrame:
    """One object in one frame, ranked by its J (lowest first)."""

    sequence: str
    frame: str
    object_id: int
    j: float
    f: float


def summarize_sequences(scores: Iterable[SequenceScore]) -> list[SequenceSummary]:
    """Per-sequence J and F: the mean over objects of ``metrics.statistics(...).mean``.

    For one-object sequences (DAVIS 2016) these are the per-sequence CSV's numbers unrounded.
    """
    summaries = []
    for score in scores:
        j = [statistics(row).mean for row in score.j]
        f = [statistics(row).mean for row in score.f]
        summaries.append(SequenceSummary(score.sequence, float(np.mean(j)), float(np.mean(f))))
    return summaries


def worst_frames(scores: Iterable[SequenceScore], count: int = WORST_DEFAULT) -> list[WorstFrame]:
    """The ``count`` (object, frame) pairs with the lowest J; ties keep dataset order."""
    candidates = []
    for score in scores:
        for row, object_id in enumerate(score.object_ids):
            for column, frame in enumerate(score.frames):
                j, f = float(score.j[row, column]), float(score.f[row, column])
                if not np.isnan(j):
                    candidates.append(WorstFrame(score.sequence, frame, object_id, j, f))
    candidates.sort(key=lambda worst: worst.j)  # stable: ties stay in dataset order
    return candidates[:count]


def write_eval_plots(
    scores: list[SequenceScore],
    sequences: Iterable[Sequence],
    predictions: Path,
    folder: Path,
    worst: int = WORST_DEFAULT,
) -> list[Path]:
    """Write the sequence chart, the per-frame J charts and the worst-frame sheet into folder.

    sequences: the benchmark's, for the frames and ground truth of the worst frames;
    predictions: the masks that were scored (``<predictions>/<sequence>/<frame>.png``).
    Returns the files written, in the order listed in the module docstring.
    """
    require_matplotlib()
    if not scores:
        raise UserError(f"{folder}: no scored sequence to plot")
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"{folder}: a file, not a folder for the plots") from None
    except OSError as error:
        raise UserError(f"{folder}: cannot make the plots folder ({error.strerror})") from None
    by_name = {sequence.name: sequence for sequence in sequences}
    written = [_save(_sequence_chart(summarize_sequences(scores)), folder / "sequences.png")]
    pages = [scores[i : i + SEQUENCES_PER_PAGE] for i in range(0, len(scores), SEQUENCES_PER_PAGE)]
    for number, page in enumerate(pages, start=1):
        name = "frames.png" if number == 1 else f"frames-{number}.png"
        written.append(_save(_frame_curves(page, by_name), folder / name))
    chosen = worst_frames(scores, worst)
    written.append(write_worst_frames_csv(chosen, folder / "worst-frames.csv"))
    sheet = _worst_frame_sheet(chosen, by_name, Path(predictions))
    written.insert(-1, _save(sheet, folder / "worst-frames.png", colours=128))
    return written


def write_worst_frames_csv(chosen: list[WorstFrame], path: Path) -> Path:
    """The sheet's frames in its order: rank, sequence, frame, object, J, F (full precision)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["rank", "sequence", "frame", "object", "J", "F"])
    for rank, worst in enumerate(chosen, start=1):
        writer.writerow([rank, worst.sequence, worst.frame, worst.object_id, worst.j, worst.f])
    write_text_atomic(path, buffer.getvalue())
    return path


def plot_comparison(comparison: Comparison, path: Path) -> Path:
    """Bar chart of each sequence's J&F change from A to B (better green, worse red)."""
    require_matplotlib()
    from matplotlib.figure import Figure

    rows = comparison.rows[::-1]  # barh draws bottom-up: the best improvement on top
    figure = Figure(figsize=(7.5, 1.2 + 0.24 * len(rows)), layout="constrained")
    axes = figure.add_subplot()
    deltas = [row.delta_j_and_f for row in rows]
    palette = {"better": "#2a9d3a", "worse": "#d1342f", "same": "#888888", "n/a": "#888888"}
    colours = [palette[row.verdict] for row in rows]
    axes.barh(range(len(rows)), deltas, color=colours)
    axes.set_yticks(range(len(rows)), [row.name for row in rows], fontsize=8)
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_xlabel(f"J&F change ({comparison.label_b} minus {comparison.label_a})")
    axes.set_title(
        f"{comparison.label_a} -> {comparison.label_b}: {comparison.n_better} better, "
        f"{comparison.n_worse} worse, mean J&F {comparison.mean_a:.3f} -> "
        f"{comparison.mean_b:.3f}",
        fontsize=9,
    )
    axes.grid(axis="x", alpha=0.3)
    return _save(figure, Path(path))


def _sequence_chart(summaries: list[SequenceSummary]) -> Figure:
    from matplotlib.figure import Figure

    ordered = sorted(summaries, key=lambda s: s.j_and_f, reverse=True)  # barh draws bottom-up
    figure = Figure(figsize=(7.5, 1.3 + 0.26 * len(ordered)), layout="constrained")
    axes = figure.add_subplot()
    positions = np.arange(len(ordered))
    axes.barh(positions, [s.j_and_f for s in ordered], color="#4c78a8", label="J&F")
    axes.scatter([s.j for s in ordered], positions, marker="|", s=90, color="black", label="J")
    axes.scatter([s.f for s in ordered], positions, marker="|", s=90, color="#e45756", label="F")
    axes.set_yticks(positions, [s.sequence for s in ordered], fontsize=8)
    for position, summary in zip(positions, ordered, strict=True):
        axes.text(1.01, position, f"{summary.j_and_f:.3f}", va="center", fontsize=7)
    axes.set_xlim(0, 1.08)
    axes.set_xlabel("mean over the sequence's objects and scored frames")
    overall = np.mean([s.j_and_f for s in summaries])
    axes.set_title(f"J&F per sequence, worst at the top (mean of sequences {overall:.3f})")
    axes.legend(loc="lower right", fontsize=7, ncols=3)
    axes.grid(axis="x", alpha=0.3)
    return figure


def _frame_curves(scores: list[SequenceScore], by_name: dict[str, Sequence]) -> Figure:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    columns = min(4, len(scores))
    rows = -(-len(scores) // columns)
    figure = Figure(figsize=(2.6 * columns, 0.6 + 1.55 * rows), layout="constrained")
    grid = figure.subplots(rows, columns, sharey=True, squeeze=False)
    for axes in grid.flat[len(scores) :]:
        axes.set_visible(False)
    for axes, score in zip(grid.flat, scores):
        sequence = by_name.get(score.sequence)
        index_of = {n: i for i, n in enumerate(sequence.frame_names)} if sequence else {}
        x = [index_of.get(frame, column) for column, frame in enumerate(score.frames)]
        for row, object_id in enumerate(score.object_ids):
            colour = DAVIS_PALETTE[object_id] / 255.0
            axes.plot(x, score.j[row], color=colour, linewidth=1.0, label=f"object {object_id}")
        mean_j = float(np.mean([statistics(row).mean for row in score.j]))
        axes.axhline(mean_j, color="gray", linewidth=0.7, linestyle="--")
        axes.set_title(f"{score.sequence}  J {mean_j:.3f}", fontsize=8)
        axes.set_ylim(-0.02, 1.02)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.tick_params(labelsize=7)
        axes.grid(alpha=0.3)
        if score.j.shape[0] > 1:
            axes.legend(fontsize=6, loc="lower left")
    figure.suptitle("J per frame (dashed: the sequence's mean J); x: frame index", fontsize=9)
    return figure


def _worst_frame_sheet(
    chosen: list[WorstFrame], by_name: dict[str, Sequence], predictions: Path
) -> Figure:
    """Rows of (image, truth, prediction) triples, two triples a row past six frames."""
    from matplotlib.figure import Figure

    if not chosen:
        figure = Figure(figsize=(4, 1))
        figure.text(0.5, 0.5, "no scored frames", ha="center", va="center")
        return figure
    triples = 2 if len(chosen) > 6 else 1
    rows = -(-len(chosen) // triples)
    panels = [_panels(worst, by_name, predictions) for worst in chosen]
    height, width = panels[0][0].shape[:2]
    panel_w = THUMB_WIDTH / 100  # inches at 100 dpi: one pixel of the thumbnail per pixel
    panel_h = panel_w * height / width + 0.32  # room for the title line
    figure = Figure(figsize=(panel_w * 3 * triples, 0.3 + panel_h * rows))
    grid = figure.subplots(rows, 3 * triples, squeeze=False)
    figure.subplots_adjust(
        left=0.005,
        right=0.995,
        bottom=0.005,
        top=1 - 0.3 / figure.get_figheight(),
        wspace=0.03,
        hspace=0.3,
    )
    for axes in grid.flat:
        axes.set_axis_off()
    for number, (worst, images) in enumerate(zip(chosen, panels, strict=True)):
        row, first = divmod(number, triples)
        titles = (
            f"#{number + 1} {worst.sequence} {worst.frame}",
            f"truth (object {worst.object_id})",
            f"prediction J {worst.j:.3f} F {worst.f:.3f}",
        )
        for offset, (image, title) in enumerate(zip(images, titles, strict=True)):
            axes = grid[row, 3 * first + offset]
            axes.imshow(image, interpolation="antialiased")
            axes.set_title(title, fontsize=7, pad=2)
    figure.suptitle(
        f"The {len(chosen)} frames with the lowest J (truth green, prediction red)",
        fontsize=9,
        y=1 - 0.05 / figure.get_figheight(),
        va="top",
    )
    return figure


def _panels(
    worst: WorstFrame, by_name: dict[str, Sequence], predictions: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image, truth over it and prediction over it, each (h, THUMB_WIDTH, 3) uint8."""
    sequence = by_name.get(worst.sequence)
    if sequence is None:
        raise UserError(f"{predictions}: sequence {worst.sequence} is not in the benchmark")
    index = sequence.frame_names.index(worst.frame)
    frame_path = sequence.frames[index]
    try:
        with Image.open(frame_path) as opened:
            image = opened.convert("RGB")
    except OSError as error:
        raise UserError(f"{frame_path}: cannot read frame ({error})") from None
    truth = read_mask(sequence.annotated[index]) == worst.object_id
    prediction = read_mask(predictions / worst.sequence / f"{worst.frame}.png") == worst.object_id
    size = (THUMB_WIDTH, max(1, round(THUMB_WIDTH * image.height / image.width)))
    # Shrinking averages (bilinear); a frame smaller than the panel keeps its pixels sharp.
    resample = Image.BILINEAR if image.width > THUMB_WIDTH else Image.NEAREST
    thumb = np.asarray(image.resize(size, resample))
    return (
        thumb,
        _tinted(thumb, truth, size, TRUTH_COLOUR),
        _tinted(thumb, prediction, size, PREDICTION_COLOUR),
    )


def _tinted(thumb: np.ndarray, mask: np.ndarray, size: tuple[int, int], colour) -> np.ndarray:
    """The frame in dim gray (compresses well), the mask blended with colour. mask: (H, W) bool."""
    resample = Image.BILINEAR if mask.shape[1] > size[0] else Image.NEAREST
    small = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, resample))
    alpha = (small.astype(np.float32) / 255.0)[..., None] * 0.7
    gray = thumb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    dimmed = np.round(gray * (0.45 / 8)).clip(0, 255)[..., None] * 8  # 32 gray levels at most
    tinted = dimmed * (1 - alpha) + np.asarray(colour, np.float32) * alpha
    return tinted.clip(0, 255).astype(np.uint8)


def _save(figure: Figure, path: Path, colours: int | None = None) -> Path:
    """PNG at 100 dpi, written atomically; colours: quantize to a palette (photos stay small)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, facecolor="white")
    data = buffer.getvalue()
    if colours is not None:
        with Image.open(io.BytesIO(data)) as image:
            quantized = image.convert("RGB").quantize(colours, method=Image.Quantize.FASTOCTREE)
        buffer = io.BytesIO()
        quantized.save(buffer, format="png", optimize=True)
        data = buffer.getvalue()
    if path.is_dir():
        raise UserError(f"{path}: a folder; name the PNG file to write")
    try:
        with atomic_path(path) as partial:
            partial.write_bytes(data)
    except OSError as error:
        raise UserError(f"{path}: cannot write the plot ({error.strerror or error})") from None
    return path
