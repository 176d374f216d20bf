"""``seggpt-video eval``: DAVIS / YouTube-VOS benchmarks with the official DAVIS measures."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from seggpt_video.cli.app import app
from seggpt_video.cli.options import (
    REFINE_DEFAULT,
    BatchSize,
    Checkpoint,
    Crops,
    CropsOption,
    Device,
    Dtype,
    Ensemble,
    EnsembleOption,
    ExampleOption,
    Memory,
    ModelName,
    PerObject,
    PromptFile,
    Refine,
    RefineOption,
    Task,
    TaskOption,
    build_segmenter,
    resolve_memory,
)
from seggpt_video.errors import UserError

if TYPE_CHECKING:
    from seggpt_video.distributed import Rank
    from seggpt_video.evaluation.datasets import Benchmark
    from seggpt_video.evaluation.scoring import Results
    from seggpt_video.evaluation.sharding import Shard

console = Console(emoji=False)


@app.command("eval", short_help="Score masks on DAVIS or YouTube-VOS, or run the model first.")
def eval_command(
    dataset: Annotated[
        Path,
        typer.Argument(
            metavar="DATASET", help="DAVIS or YouTube-VOS folder (JPEGImages, Annotations, ...)."
        ),
    ],
    predictions: Annotated[
        Path | None,
        typer.Option(
            "--predictions",
            "-p",
            metavar="DIR",
            help="Score these masks (<folder>/<sequence>/<frame>.png, palette or 0/255) "
            "instead of running the model.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="DIR",
            help="Results folder (masks when running the model, CSVs, score cache). "
            "Default: the --predictions folder, as the official evaluation does.",
        ),
    ] = None,
    benchmark_kind: Annotated[
        str,
        typer.Option(
            "--benchmark",
            metavar="NAME",
            help="davis2017, davis2016, youtube-vos or auto (from the files).",
        ),
    ] = "auto",
    split: Annotated[
        str, typer.Option(metavar="NAME", help="DAVIS split: ImageSets/<year>/<split>.txt.")
    ] = "val",
    resolution: Annotated[
        str, typer.Option(metavar="NAME", help="DAVIS image folder: 480p, 240p, ...")
    ] = "480p",
    sequences: Annotated[
        str | None,
        typer.Option(metavar="NAME,...", help="Only these sequences, comma-separated."),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            metavar="K/N", help="K/N: do the K-th of N shares (split again over torchrun ranks)."
        ),
    ] = None,
    threads: Annotated[
        int, typer.Option(min=1, metavar="N", help="Threads decoding mask PNGs.")
    ] = 4,
    plots: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Also draw where the model fails: J&F per sequence, J per frame, the worst "
            "frames (PNGs; needs matplotlib: pip install 'seggpt-video[plots]').",
        ),
    ] = None,
    worst: Annotated[
        int, typer.Option(min=1, metavar="N", help="Frames on the --plots worst-frame sheet.")
    ] = 12,
    memory: Memory = None,
    batch_size: BatchSize = 1,
    ensemble: EnsembleOption = Ensemble.feature,
    per_object: PerObject = False,
    refine: RefineOption = REFINE_DEFAULT,
    crops: CropsOption = Crops.auto,
    task: TaskOption = Task.instance,
    example: ExampleOption = None,
    prompt_file: PromptFile = None,
    model: ModelName = None,
    checkpoint: Checkpoint = None,
    device: Device = "auto",
    dtype: Dtype = "auto",
) -> None:
    """Score predictions on DAVIS exactly as the DAVIS challenge does, or run the model first.

    Writes global_results-<split>.csv and per-sequence_results-<split>.csv. YouTube-VOS has no
    public ground truth: the masks are zipped as the challenge server wants them instead.
    """
    from seggpt_video.distributed import Rank
    from seggpt_video.evaluation.datasets import open_benchmark
    from seggpt_video.evaluation.sharding import Shard

    if plots is not None:
        _check_plots()
    chosen = _names(sequences)
    benchmark = open_benchmark(dataset, benchmark_kind, split, resolution, chosen)
    if plots is not None and not benchmark.has_ground_truth:
        raise UserError(f"--plots: {dataset} has no ground truth here to score, nothing to plot")
    if predictions is not None and (model is not None or checkpoint is not None):
        raise UserError("--predictions: scores existing masks; leave out --model/--checkpoint")
    if predictions is None and output is None:
        raise UserError("--output: needed to hold the masks when running the model")
    output = output if output is not None else predictions

    rank = Rank.from_environment()
    share = (Shard.parse(shard) if shard else Shard()).split(rank)
    mine = share.take(list(benchmark.sequences))
    rank.start()
    try:
        if predictions is None:
            predictions = output / "Annotations" if benchmark.kind == "youtube-vos" else output
            options = {
                "memory": resolve_memory(memory, model, checkpoint),
                "batch_size": batch_size,
                "ensemble": Ensemble(ensemble).value,
                "per_object": per_object,
                "prompt_file": prompt_file,
                "refine": Refine(refine).value,
                "task": Task(task).value,
                "crops": Crops(crops).value,
            }
            loading = {"model": model, "checkpoint": checkpoint, "device": device, "dtype": dtype}
            _predict(mine, predictions, rank, loading, options, example or [])
        elif not predictions.is_dir():
            raise UserError(f"{predictions}: predictions folder not found")
        if benchmark.has_ground_truth:
            _score(mine, predictions, output, threads)
        rank.barrier()
        if rank.is_main:
            _finish(benchmark, predictions, output, share, chosen is not None, plots, worst)
    finally:
        rank.stop()


def _names(sequences: str | None) -> list[str] | None:
    if sequences is None:
        return None
    return [name.strip() for name in sequences.split(",") if name.strip()]


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _predict(
    mine, predictions: Path, rank: Rank, loading: dict, options: dict, examples: list[str]
) -> None:
    """Run the model over this process's sequences that have no complete masks yet; examples
    ('IMAGE:MASK') are prompts for every frame of every sequence, beside its given masks."""
    from seggpt_video.clip import prepare_output, read_examples
    from seggpt_video.evaluation.inference import SETTINGS_FILE, is_predicted, predict_sequence
    from seggpt_video.io.state import check_settings, record_settings
    from seggpt_video.refine import DEFAULT_SETTINGS, refine_record
    from seggpt_video.runtime import resolve_device, resolve_dtype

    if loading["device"] == "auto":
        loading = {**loading, "device": rank.device}
    dtype = resolve_dtype(loading["dtype"], resolve_device(loading["device"]))
    settings = {
        "model": loading["model"],
        "checkpoint": str(loading["checkpoint"]) if loading["checkpoint"] else None,
        "dtype": str(dtype).removeprefix("torch."),
        **options,
        "prompt_file": str(options["prompt_file"]) if options["prompt_file"] else None,
        "refine": refine_record(options["refine"], DEFAULT_SETTINGS),
    }
    prompts, records = read_examples(examples)
    if records:
        settings["examples"] = records
    prepare_output(predictions)
    check_settings(predictions / SETTINGS_FILE, settings)
    todo = [sequence for sequence in mine if not is_predicted(sequence, predictions)]
    if not todo:
        return
    segmenter = build_segmenter(**loading, **options)  # a bad model fails before any file
    record_settings(predictions / SETTINGS_FILE, settings)
    with _progress() as progress:
        overall = progress.add_task("predicting", total=len(todo))
        for sequence in todo:
            frames = progress.add_task(f"  {sequence.name}", total=len(sequence.frames))
            predict_sequence(
                segmenter,
                sequence,
                predictions,
                on_frame=lambda _, t=frames: progress.advance(t),
                examples=prompts,
            )
            progress.remove_task(frames)
            progress.advance(overall)


def _score(mine, predictions: Path, output: Path, threads: int) -> None:
    from seggpt_video.evaluation.scoring import score_predictions

    with _progress() as progress:
        task = progress.add_task("scoring", total=len(mine))

        def advance(score, was_cached: bool) -> None:
            state = "cached" if was_cached else "scored"
            progress.update(task, advance=1, description=f"scoring ({score.sequence} {state})")

        score_predictions(mine, predictions, output, threads=threads, on_sequence=advance)


def _finish(
    benchmark: Benchmark,
    predictions: Path,
    output: Path,
    share: Shard,
    partial: bool,
    plots: Path | None = None,
    worst: int = 12,
) -> None:
    """Merge every shard's cached scores into the CSVs, or zip a YouTube-VOS submission."""
    from seggpt_video.evaluation.scoring import collect_cached, summarize, write_results_csv
    from seggpt_video.evaluation.youtube_vos import missing_masks, write_submission

    if benchmark.kind != "youtube-vos" and not benchmark.has_ground_truth:
        console.print(
            f"masks in {predictions}. No local score: this {benchmark.kind} {benchmark.split} "
            "split has first-frame masks only; submit the masks to the DAVIS challenge server."
        )
        return
    if not benchmark.has_ground_truth:
        archive = output / "submission.zip"
        if not share.is_whole:
            if missing_masks(benchmark, predictions):
                console.print("masks saved; zip after the other shards finish (rerun any shard)")
                return
        count = write_submission(benchmark, predictions, archive)
        console.print(
            f"wrote {archive} ({count} masks). No local score: YouTube-VOS ground truth is not "
            "public; upload the zip to the challenge server (CodaLab) to get J and F."
        )
        return
    scores, missing = collect_cached(benchmark, predictions, output)
    if missing:
        console.print(
            f"scored {len(scores)} of {len(benchmark.sequences)} sequences; the rest belong to "
            "other shards. Run them: whichever finishes last writes the CSVs."
        )
        return
    results = summarize(scores)
    global_csv, sequence_csv = write_results_csv(results, output, benchmark.split)
    _print_results(results, benchmark, partial)
    console.print(f"Global results saved in {global_csv}")
    console.print(f"Per-sequence results saved in {sequence_csv}")
    if plots is not None:
        from seggpt_video.evaluation.plots import write_eval_plots

        written = write_eval_plots(scores, benchmark.sequences, predictions, plots, worst)
        console.print(f"Plots saved in {plots}: {', '.join(path.name for path in written)}")


def _check_plots() -> None:
    """Before any work: without matplotlib, say in one line what to install."""
    from seggpt_video.evaluation.plots import require_matplotlib

    try:
        require_matplotlib()
    except UserError as error:
        raise UserError(f"--plots: {error}") from None


def _print_results(results: Results, benchmark: Benchmark, partial: bool) -> None:
    from seggpt_video.evaluation.scoring import GLOBAL_COLUMNS, format_number

    per_object = Table(title=f"Per sequence results for {benchmark.split}")
    for column in ("Sequence", "J-Mean", "F-Mean"):
        per_object.add_column(column, justify="left" if column == "Sequence" else "right")
    for name, j, f in results.per_object:
        per_object.add_row(name, format_number(j), format_number(f))
    console.print(per_object)
    title = f"Global results for {benchmark.split} ({benchmark.kind})"
    if partial:
        count = len(benchmark.sequences)
        title += f", {count} chosen sequence{'s' * (count != 1)} only (--sequences)"
    overall = Table(title=title)
    for column in GLOBAL_COLUMNS:
        overall.add_column(column, justify="right")
    overall.add_row(*(format_number(results.global_scores[c]) for c in GLOBAL_COLUMNS))
    console.print(overall)
    if any(math.isnan(value) for value in results.global_scores.values()):
        console.print("some values are empty: a sequence had no frame to score (NaN)")
