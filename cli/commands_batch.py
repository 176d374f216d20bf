"""``seggpt-video batch``: many clips, each segmented as `run` would, the model loaded once."""

from __future__ import annotations

import signal
import time
from enum import Enum
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from seggpt_video.cli.app import INTERRUPTED, app
from seggpt_video.cli.commands_run import DEFAULT_FORMATS
from seggpt_video.cli.options import (
    REFINE_DEFAULT,
    Backend,
    BatchSize,
    Checkpoint,
    Crops,
    CropsOption,
    Device,
    Dtype,
    Ensemble,
    EnsembleOption,
    ExampleOption,
    Formats,
    Memory,
    ModelName,
    Overwrite,
    PerObject,
    PromptFile,
    Refine,
    RefineOption,
    ResizeMask,
    Soft,
    Task,
    TaskOption,
    build_segmenter,
)
from seggpt_video.errors import UserError

if TYPE_CHECKING:
    from seggpt_video.batch import ClipJob, ClipRecord
    from seggpt_video.distributed import Rank

console = Console(stderr=True, emoji=False)
FAILED = 1  # some clip failed (the others are done); 2 stays "the command itself was wrong"
STATUS_SECONDS = 5.0  # how often OUT/batch.jsonl is rewritten while clips finish
TABLE_ROWS = 40  # above this many clips the closing table lists the failed ones only


class Engine(str, Enum):
    """Where the clips run (torchrun needs no flag: its ranks are read from the environment)."""

    local = "local"
    ray = "ray"


@app.command(short_help="Segment many clips: one process, torchrun ranks or Ray.")
def batch(
    manifest: Annotated[
        Path,
        typer.Argument(
            metavar="MANIFEST",
            help="CSV with a header row: video,mask[,name] (mask: FILE, and FRAME:FILE entries "
            "separated by ';'; paths relative to the CSV), or a folder of videos (see --masks).",
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            metavar="OUT",
            help="Output folder: OUT/<name>/ per clip, OUT/batch.jsonl.",
        ),
    ],
    masks: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="With a folder of videos: the folder holding <video stem>.png masks.",
        ),
    ] = None,
    formats: Formats = None,
    engine: Annotated[
        Engine,
        typer.Option(help="local (one process, or this rank's share under torchrun) or ray."),
    ] = Engine.local,
    address: Annotated[
        str | None,
        typer.Option(
            metavar="HOST:PORT",
            help="Ray: the cluster to join ('auto', or host:port); default a local one.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="Ray: actors to start (default: one per GPU, else one per node).",
        ),
    ] = None,
    memory: Memory = None,
    batch_size: BatchSize = 1,
    ensemble: EnsembleOption = Ensemble.feature,
    per_object: PerObject = False,
    refine: RefineOption = REFINE_DEFAULT,
    soft: Soft = False,
    crops: CropsOption = Crops.auto,
    task: TaskOption = Task.instance,
    example: ExampleOption = None,
    prompt_file: PromptFile = None,
    resize_mask: ResizeMask = False,
    backend: Backend = "auto",
    overwrite: Overwrite = False,
    model: ModelName = None,
    checkpoint: Checkpoint = None,
    device: Device = "auto",
    dtype: Dtype = "auto",
) -> None:
    """Segment every clip of a manifest; a re-run skips finished clips and resumes the rest.

    Exit code 1 when a clip failed (its error is in OUT/batch.jsonl; the others went on).
    """
    from seggpt_video.batch import (
        ClipOptions,
        ClipRunner,
        plan_batch,
        read_manifest,
        run_local,
        run_ranks,
        run_ray,
        worker_name,
        write_status,
    )
    from seggpt_video.clip import parse_example, prepare_output, read_examples
    from seggpt_video.distributed import Rank

    rank = Rank.from_environment()
    if engine is Engine.ray and rank.size > 1:
        raise UserError("--engine ray: not under torchrun (Ray starts its own workers)")
    if engine is Engine.local and (address is not None or workers is not None):
        raise UserError("--address/--workers: for --engine ray only")
    if str(output) == "-":
        raise UserError("-o -: batch writes a folder per clip; give an output folder")
    options = ClipOptions(
        formats=tuple(formats or DEFAULT_FORMATS),
        resize_mask=resize_mask,
        backend=backend,
        overwrite=overwrite,
        prompt_file=prompt_file.resolve() if prompt_file else None,
        examples=tuple(
            ":".join(str(path.resolve()) for path in parse_example(value))
            for value in example or []
        ),
    )
    read_examples(list(options.examples))  # a bad example stops the batch before any work
    jobs = read_manifest(manifest, masks, examples=bool(options.examples))
    output = output.resolve()
    finished, todo = plan_batch(jobs, output, overwrite)
    make_segmenter = partial(
        build_segmenter,
        model,
        checkpoint.resolve() if checkpoint else None,
        _rank_device(rank, device),
        dtype,
        memory,
        batch_size,
        Ensemble(ensemble).value,
        per_object,
        options.prompt_file,
        refine=Refine(refine).value,
        soft=soft,
        task=Task(task).value,
        crops=Crops(crops).value,
    )
    if rank.is_main:
        console.print(
            f"{len(jobs)} clips: {len(todo)} to do, {len(finished)} finished earlier"
            + (f"; {rank.size} torchrun ranks" if rank.size > 1 else ""),
            highlight=False,
        )
    runner = None
    if engine is Engine.local:
        kind = f"rank {rank.rank}" if rank.size > 1 else "local"
        runner = ClipRunner(
            make_segmenter, output, options, worker_name(kind), shared=rank.size > 1
        )
        if jobs and rank.size == 1:
            runner.load()  # a bad --checkpoint is refused before anything is written
    prepare_output(output)
    # finished clips first: a worker only checks their settings and skips them
    sent = finished + todo
    records: dict[str, ClipRecord] = {}
    progress = _BatchProgress(len(sent), show=rank.is_main)
    began = time.perf_counter()
    try:
        with progress:
            if engine is Engine.ray:
                records |= run_ray(
                    sent, make_segmenter, output, options, workers, address,
                    on_frames=progress.frames, on_record=_keep(records, jobs, output, progress),
                    use_gpus=device != "cpu",
                )  # fmt: skip
            elif rank.size > 1:
                # torchrun stops the other ranks with SIGTERM when one fails or is interrupted:
                # unwind as Ctrl-C does, so the writers discard what they had not finished.
                signal.signal(signal.SIGTERM, _interrupt)
                records |= run_ranks(sent, runner, rank, progress.frames, progress.record)
            else:
                records |= run_local(
                    sent, runner, progress.frames, _keep(records, jobs, output, progress)
                )
    except KeyboardInterrupt:
        if not rank.is_main:
            raise typer.Exit(INTERRUPTED) from None
        write_status(output, jobs, records)
        console.print(
            f"interrupted after {progress.finished} of {len(sent)} clips; finished clips and "
            f"frames are kept in {output}; re-run the same command to resume",
            highlight=False,
        )
        raise typer.Exit(INTERRUPTED) from None
    if not rank.is_main:
        return
    status = write_status(output, jobs, records)
    _print_summary(jobs, records, time.perf_counter() - began, progress.computed, status)
    if any(record.status == "failed" for record in records.values()):
        raise typer.Exit(FAILED)


def _rank_device(rank: Rank, device: str) -> str:
    """Under torchrun each rank takes its own GPU, whether asked by auto or by cuda."""
    if rank.size > 1 and device == "cuda":
        return f"cuda:{rank.local_rank}"
    return rank.device if device == "auto" else device


def _keep(records: dict[str, ClipRecord], jobs: list[ClipJob], output: Path, progress):
    """After each clip: show it, and rewrite OUT/batch.jsonl now and then (and at the end)."""
    written = time.monotonic()

    from seggpt_video.batch import write_status

    def keep(record: ClipRecord) -> None:
        nonlocal written
        records[record.name] = record
        progress.record(record)
        # every few seconds, not after every clip: a long batch of short clips would
        # otherwise rewrite the whole file thousands of times
        if time.monotonic() - written >= STATUS_SECONDS:
            write_status(output, jobs, records)
            written = time.monotonic()

    return keep


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class _BatchProgress:
    """One display for the whole batch: clips finished (done, failed) and frames/s computed."""

    def __init__(self, total: int, show: bool = True) -> None:
        self.finished = self.done = self.failed = self.computed = 0
        self._began = time.perf_counter()
        self._bar = Progress(
            TextColumn("clips"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[done]} done, {task.fields[failed]} failed"),
            TextColumn("{task.fields[fps]} frames/s"),
            TimeElapsedColumn(),
            console=console,
            disable=not show,
        )
        self._task = self._bar.add_task("clips", total=total, done=0, failed=0, fps="-")

    def frames(self, count: int) -> None:
        self.computed += count
        elapsed = time.perf_counter() - self._began
        self._bar.update(self._task, fps=f"{self.computed / elapsed:.2f}")

    def record(self, record: ClipRecord) -> None:
        self.finished += 1
        self.done += record.status == "done"
        self.failed += record.status == "failed"
        self._bar.update(self._task, advance=1, done=self.done, failed=self.failed)

    def __enter__(self) -> _BatchProgress:
        self._began = time.perf_counter()
        self._bar.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._bar.__exit__(*exc_info)


def _print_summary(
    jobs: list[ClipJob],
    records: dict[str, ClipRecord],
    seconds: float,
    computed: int,
    status: Path,
) -> None:
    """The closing table (every clip, or the failed ones of a long batch) and the totals."""
    counts = {kind: 0 for kind in ("done", "failed", "skipped")}
    for record in records.values():
        counts[record.status] += 1
    shown = [records[job.name] for job in jobs if job.name in records]
    if len(shown) > TABLE_ROWS:
        shown = [record for record in shown if record.status == "failed"]
    if shown:
        table = Table()
        for column in ("clip", "status", "frames", "objects", "seconds", "worker", "error"):
            right = column in ("frames", "objects", "seconds")
            table.add_column(column, justify="right" if right else "left", overflow="fold")
        style = {"done": "green", "failed": "red", "skipped": "dim"}
        for record in shown:
            table.add_row(
                record.name,
                f"[{style[record.status]}]{record.status}[/]",
                str(record.frames),
                str(len(record.objects)),
                f"{record.seconds:.1f}",
                record.worker or "",
                record.error or "; ".join(record.warnings),
            )
        console.print(table)
    frames = sum(record.frames for record in records.values() if record.status == "done")
    rate = computed / seconds if seconds > 0 else 0.0
    console.print(
        f"{counts['done']} done, {counts['failed']} failed, {counts['skipped']} skipped; "
        f"{frames} frames segmented, {rate:.2f} frames/s computed; status in {status}",
        highlight=False,
    )
