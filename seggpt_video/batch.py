"""Many clips, one model per worker: the manifest, each clip's status record, and the engines.

Every clip goes through :func:`seggpt_video.clip.segment_clip` exactly as `run` sends it, into
``OUT/<name>/``, so its outputs are what `run` writes and a half-done clip resumes as `run`
resumes. Around that:

- the manifest (:func:`read_manifest`): a CSV with ``video,mask[,name]`` or a folder of videos;
- the status record of each clip, ``OUT/.seggpt-video/batch/<name>.json``, written atomically
  and last: a clip whose record says ``done`` is finished, and a re-run with the same settings
  skips it without touching its files;
- ``OUT/batch.jsonl``: one JSON line per clip of the manifest that has a result (done, failed,
  skipped), written atomically by whoever drives the batch (:func:`write_status`);
- the engines: :func:`run_local` (one process), :func:`run_ranks` (under torchrun: this rank's
  share, see :func:`share_of`; rank 0 gets every record) and :func:`run_ray` (Ray actors, clips
  handed out to whichever is free, a clip whose actor dies retried on another).

Workers read the clips and write the outputs through the paths they are given: with more than
one machine, the manifest's files and OUT must be on a filesystem every worker sees.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import av

from seggpt_video.clip import (
    SETTINGS_FILE,
    open_clip,
    read_examples,
    run_settings,
    segment_clip,
)
from seggpt_video.distributed import Rank
from seggpt_video.engine import SegmentedFrame, Segmenter
from seggpt_video.errors import UserError
from seggpt_video.io.atomic import write_text_atomic
from seggpt_video.io.state import STATE_FOLDER
from seggpt_video.io.video import FRAME_SUFFIXES
from seggpt_video.io.writers import check_formats

STATUS_FILE = "batch.jsonl"
RECORDS_FOLDER = Path(STATE_FOLDER) / "batch"
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")
COLUMNS = ("video", "mask", "name")
RANK_TIMEOUT = timedelta(days=7)  # torchrun ranks wait at the end for the slowest share
MAX_ATTEMPTS = 3  # Ray: a clip whose worker died this many times is recorded as failed

SegmenterFactory = Callable[[], Segmenter]
FramesCallback = Callable[[int], None]
RecordCallback = Callable[["ClipRecord"], None]


@dataclass(frozen=True)
class ClipJob:
    """One clip of a batch: its output folder's name, its video and its masks.

    masks: 'FILE' or 'FRAME:FILE' strings with absolute paths. frames: the container's own
    frame count (a guess, 0 when unknown), used only to order and balance the work.
    """

    name: str
    video: Path
    masks: tuple[str, ...]
    frames: int = 0


@dataclass
class ClipRecord:
    """What became of one clip: one line of batch.jsonl and the clip's own record file.

    status: done, failed or skipped (done by an earlier run). frames: frames in the clip's
    outputs; resumed: of those, read back from an earlier attempt. objects: the object ids.
    seconds: wall time of this attempt. worker: who did it. error: a failure's one line.
    """

    name: str
    video: str
    status: str
    frames: int = 0
    resumed: int = 0
    objects: list[int] = field(default_factory=list)
    seconds: float = 0.0
    worker: str | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        """One line of JSON."""
        return json.dumps(asdict(self), sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> ClipRecord:
        """The record a :meth:`to_json` line holds."""
        return cls(**json.loads(text))


@dataclass(frozen=True)
class ClipOptions:
    """What `run` options every clip of a batch shares, besides the model's."""

    formats: tuple[str, ...] = ("davis", "overlay", "summary")
    resize_mask: bool = False
    backend: str = "auto"
    overwrite: bool = False
    prompt_file: Path | None = None
    examples: tuple[str, ...] = ()
    """'IMAGE:MASK' prompts from outside the videos, for every clip (absolute paths)."""

    def __post_init__(self) -> None:
        check_formats(self.formats)  # checked once here rather than failing every clip alike


# -- the manifest ---------------------------------------------------------------------------


def read_manifest(
    manifest: Path | str, masks: Path | str | None = None, examples: bool = False
) -> list[ClipJob]:
    """The clips of a CSV manifest (video[,mask][,name]) or of a folder of videos.

    A folder: every video file in it, each with the mask of the same stem in `masks`
    (<masks>/<stem>.png). Relative paths in a CSV are relative to the CSV's folder. examples:
    the batch has examples, so masks are optional (no --masks, an empty or absent mask column).
    Files are not checked here: a missing one fails its clip alone.
    """
    manifest = Path(manifest)
    if manifest.is_dir():
        if masks is None and not examples:
            raise UserError(
                f"{manifest}: a folder of videos needs --masks DIR (<stem>.png each) or "
                "--example IMAGE:MASK"
            )
        return _folder_jobs(manifest, Path(masks) if masks is not None else None)
    if masks is not None:
        raise UserError(f"--masks {masks}: only for a folder of videos; a CSV names its masks")
    if not manifest.is_file():
        raise UserError(f"{manifest}: manifest not found (a CSV file or a folder of videos)")
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{manifest}: cannot read this manifest ({error})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip() for name in reader.fieldnames or []]
    needed = ("video",) if examples else ("video", "mask")
    missing = [column for column in needed if column not in header]
    unknown = [column for column in header if column not in COLUMNS]
    if missing or unknown:
        problem = f"no {' or '.join(missing)} column" if missing else f"unknown column {unknown[0]}"
        raise UserError(
            f"{manifest}: {problem}; the header row names video, mask and optionally name"
        )
    base = manifest.parent.resolve()
    rows: list[tuple[int, Path, tuple[str, ...], str | None]] = []
    for row in reader:
        line = reader.line_num
        cells = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if None in row:
            raise UserError(f"{manifest}, line {line}: more cells than the header has columns")
        if not any(cells.values()):
            continue
        if not cells.get("video") or not (cells.get("mask") or examples):
            raise UserError(f"{manifest}, line {line}: needs a video and a mask")
        video = _resolve(base, cells["video"])
        rows.append((line, video, _masks(base, cells.get("mask", "")), cells.get("name") or None))
    if not rows:
        raise UserError(f"{manifest}: no clips (a header row, then one row per clip)")
    names = _names(manifest, [(line, video, name) for line, video, _, name in rows])
    return [
        ClipJob(name, video, clip_masks, estimate_frames(video))
        for (_, video, clip_masks, _), name in zip(rows, names)
    ]


def _folder_jobs(folder: Path, masks: Path | None) -> list[ClipJob]:
    if masks is not None and not masks.is_dir():
        raise UserError(f"--masks {masks}: not a folder")
    videos = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
    )
    if not videos:
        raise UserError(f"{folder}: no {'/'.join(VIDEO_SUFFIXES)} videos in this folder")
    videos = [video.resolve() for video in videos]
    names = _names(folder, [(0, video, None) for video in videos])

    def clip_masks(video: Path) -> tuple[str, ...]:
        return (str(masks.resolve() / f"{video.stem}.png"),) if masks is not None else ()

    return [
        ClipJob(name, video, clip_masks(video), estimate_frames(video))
        for video, name in zip(videos, names)
    ]


def _resolve(base: Path, text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else base / path


def _masks(base: Path, text: str) -> tuple[str, ...]:
    """'first.png;120:fix.png' -> absolute 'FILE' / 'FRAME:FILE' strings for open_clip."""
    values = []
    for entry in (part.strip() for part in text.split(";")):
        if not entry:
            continue
        frame, sep, rest = entry.partition(":")
        if sep and frame.strip().isdigit():
            values.append(f"{frame.strip()}:{_resolve(base, rest.strip())}")
        else:
            values.append(str(_resolve(base, entry)))
    return tuple(values)


def _names(manifest: Path, rows: list[tuple[int, Path, str | None]]) -> list[str]:
    """Each clip's folder name: the name given, else the video's stem made unique (-2, -3...)."""
    given = {name for _, _, name in rows if name}
    taken: set[str] = set()
    names = []
    for line, video, name in rows:
        where = f"{manifest}, line {line}" if line else str(video)
        if name:
            _check_name(name, where)
            if name in taken:
                raise UserError(f"{where}: the name {name!r} is used by another clip")
        else:
            stem = video.stem if video.suffix.lower() in VIDEO_SUFFIXES else video.name
            name, count = stem, 1
            while name in taken or name in given:
                count += 1
                name = f"{stem}-{count}"
            _check_name(name, where)
        taken.add(name)
        names.append(name)
    return names


def _check_name(name: str, where: str) -> None:
    if name.startswith(".") or "/" in name or "\\" in name or name == STATUS_FILE:
        raise UserError(
            f"{where}: {name!r} cannot name a clip's output folder (no '/', no leading '.', "
            f"not {STATUS_FILE})"
        )


def estimate_frames(video: Path) -> int:
    """The frame count a container declares (or a folder's image count); 0 when unknown.

    Only orders and balances the work: opening a clip counts the frames that really decode,
    which costs a decode of the whole file, too much to do for every clip up front.
    """
    try:
        if video.is_dir():
            return sum(1 for p in video.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            if stream.duration and stream.time_base and stream.average_rate:
                return int(stream.duration * stream.time_base * stream.average_rate)
            if container.duration and stream.average_rate:
                return int(container.duration / av.time_base * stream.average_rate)
    except (OSError, av.FFmpegError, IndexError, ValueError):
        pass
    return 0


# -- records and plans ------------------------------------------------------------------------


def record_path(output: Path | str, name: str) -> Path:
    """Where clip `name`'s status record lives (written last, atomically)."""
    return Path(output) / RECORDS_FOLDER / f"{name}.json"


def read_record(output: Path | str, name: str) -> ClipRecord | None:
    """Clip `name`'s record from an earlier run, or None (none, or unreadable: do it again)."""
    try:
        return ClipRecord.from_json(record_path(output, name).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return None


def plan_batch(
    jobs: list[ClipJob], output: Path | str, overwrite: bool = False
) -> tuple[list[ClipJob], list[ClipJob]]:
    """The clips an earlier run finished, and the rest (to do).

    A finished clip still goes to a worker, which skips it when its run.json holds this run's
    settings (as `run` would refuse other settings, it fails otherwise); its frame count is
    set to 0 so that checking it weighs nothing when the work is shared out.
    """
    finished, todo = [], []
    for job in jobs:
        earlier = None if overwrite else read_record(output, job.name)
        if earlier is not None and earlier.status == "done":
            finished.append(replace(job, frames=0))
        else:
            todo.append(job)
    return finished, todo


def write_status(output: Path | str, jobs: list[ClipJob], records: dict[str, ClipRecord]) -> Path:
    """OUT/batch.jsonl: one line per clip with a result, in the manifest's order (atomic)."""
    path = Path(output) / STATUS_FILE
    lines = [records[job.name].to_json() + "\n" for job in jobs if job.name in records]
    write_text_atomic(path, "".join(lines))
    return path


def share_of(jobs: list[ClipJob], rank: int, size: int) -> list[ClipJob]:
    """Rank `rank`'s clips of `size` ranks: longest first, each to the least loaded rank.

    Every rank computes the same split from the same list (ties go to the lower rank), so the
    shares are disjoint and cover every clip without any message between ranks.
    """
    loads = [0] * size
    shares: list[list[ClipJob]] = [[] for _ in range(size)]
    for job in longest_first(jobs):
        least = min(range(size), key=lambda r: (loads[r], r))
        shares[least].append(job)
        loads[least] += max(job.frames, 1)
    return shares[rank]


def longest_first(jobs: Iterable[ClipJob]) -> list[ClipJob]:
    """Clips by declared frame count, longest first (the manifest's order among equals)."""
    return sorted(jobs, key=lambda job: -job.frames)


# -- one worker -------------------------------------------------------------------------------


class ClipRunner:
    """A worker: the model loaded once, then any number of clips segmented with it."""

    def __init__(
        self,
        make_segmenter: SegmenterFactory,
        output: Path | str,
        options: ClipOptions,
        worker: str,
        shared: bool = False,
    ) -> None:
        self.make_segmenter = make_segmenter
        self.output = Path(output)
        self.options = options
        self.worker = worker
        self.shared = shared  # workers on other machines: say so when a path is not there
        self._segmenter: Segmenter | None = None

    def load(self) -> Segmenter:
        """The model, loaded on the first call only (its errors stop the batch, not a clip)."""
        if self._segmenter is None:
            self._segmenter = self.make_segmenter()
        return self._segmenter

    def segment(self, job: ClipJob, on_frames: FramesCallback | None = None) -> ClipRecord:
        """Segment one clip into OUT/<name>/ as `run` does; a bad clip is a failed record.

        The record is written last, atomically: a clip counts as finished only once its
        outputs are all in place. Ctrl-C is not caught (the writers discard what is unfinished).
        """
        segmenter = self.load()
        if not self.options.overwrite:
            finished = self._finished(job, segmenter)
            if finished is not None:
                return finished
        path = record_path(self.output, job.name)
        path.unlink(missing_ok=True)  # redone from here: an old record no longer holds
        began = time.perf_counter()
        record = ClipRecord(job.name, str(job.video), "failed", worker=self.worker)

        def frame_done(frame: SegmentedFrame) -> None:
            if on_frames is not None and not frame.recalled:
                on_frames(1)

        try:
            self._check_visible(job)
            with open_clip(
                job.video,
                list(job.masks),
                None,
                self.options.resize_mask,
                self.options.backend,
                examples=list(self.options.examples),
            ) as clip:
                record.objects = list(clip.object_ids)
                record.warnings = list(clip.warnings)
                report = segment_clip(
                    clip,
                    segmenter,
                    self.output / job.name,
                    list(self.options.formats),
                    overwrite=self.options.overwrite,
                    settings=run_settings(clip, segmenter, self.options.prompt_file),
                    on_frame=frame_done,
                )
            record.status, record.frames, record.resumed = "done", report.frames, report.resumed
        except UserError as error:
            record.error = _one_line(str(error))
        except Exception as error:  # a clip's unforeseen failure must not stop the others
            record.error = _one_line(f"{job.video}: {type(error).__name__}: {error}")
        record.seconds = round(time.perf_counter() - began, 3)
        write_text_atomic(path, record.to_json() + "\n")
        return record

    def _finished(self, job: ClipJob, segmenter: Segmenter) -> ClipRecord | None:
        """A clip done earlier with this run's settings is skipped, untouched; with other
        settings it fails as `run` refuses them; None: not finished, segment it."""
        earlier = read_record(self.output, job.name)
        if earlier is None or earlier.status != "done":
            return None
        # run_settings reads only the clip's paths: no need to probe a finished video again
        paths = SimpleNamespace(
            video=job.video,
            masks=list(job.masks),
            frames=None,
            example_records=read_examples(list(self.options.examples))[1],
        )
        settings = run_settings(paths, segmenter, self.options.prompt_file)
        settings_path = self.output / job.name / SETTINGS_FILE
        if not settings_path.is_file():
            return None  # its folder was removed: segment it again
        try:
            recorded = json.loads(settings_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            recorded = {}
        record = ClipRecord(
            job.name, str(job.video), "skipped", earlier.frames, objects=earlier.objects,
            worker=self.worker,
        )  # fmt: skip
        if recorded != settings:
            keys = settings.keys() | (recorded.keys() if isinstance(recorded, dict) else set())
            changed = sorted(k for k in keys if not isinstance(recorded, dict)
                             or recorded.get(k) != settings.get(k))  # fmt: skip
            record.status, record.frames = "failed", 0
            record.error = (
                f"{settings_path}: this clip was finished with other settings "
                f"({', '.join(changed)}); use another output folder or --overwrite"
            )
        return record

    def _check_visible(self, job: ClipJob) -> None:
        if self.shared and not job.video.exists():
            raise UserError(
                f"{job.video}: not found on {socket.gethostname()}; every worker must see the "
                "batch's files (put the videos, masks and output on a shared filesystem)"
            )


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " ".join(lines) if len(lines) <= 3 else f"{lines[0]} ... {lines[-1]}"


def worker_name(kind: str) -> str:
    """Who did a clip: e.g. 'rank 1@host' or 'ray actor 0@host'."""
    return f"{kind}@{socket.gethostname()}"


# -- engines ----------------------------------------------------------------------------------


def run_local(
    jobs: list[ClipJob],
    runner: ClipRunner,
    on_frames: FramesCallback | None = None,
    on_record: RecordCallback | None = None,
) -> dict[str, ClipRecord]:
    """Segment `jobs` one after another in this process, with one model."""
    records: dict[str, ClipRecord] = {}
    if jobs:
        runner.load()
    for job in jobs:
        record = runner.segment(job, on_frames)
        records[job.name] = record
        if on_record is not None:
            on_record(record)
    return records


def run_ranks(
    jobs: list[ClipJob],
    runner: ClipRunner,
    rank: Rank,
    on_frames: FramesCallback | None = None,
    on_record: RecordCallback | None = None,
    timeout: timedelta = RANK_TIMEOUT,
) -> dict[str, ClipRecord]:
    """Under torchrun: this rank's share of `jobs` (:func:`share_of`); rank 0 gets every record.

    Every rank must call this with the same jobs. on_frames and on_record hear every rank's
    frames and clips on rank 0 (through torchrun's store), nothing on the others.
    """
    import torch.distributed as dist

    rank.start(timeout=timeout)
    try:
        rank.barrier()  # every rank has planned from the same records before any clip starts
        tally = _RankTally(rank, timeout)
        watcher = tally.watch(on_frames, on_record) if rank.is_main else None
        try:
            records = run_local(
                share_of(jobs, rank.rank, rank.size), runner, tally.frames, tally.record
            )
            gathered: list | None = [None] * rank.size if rank.is_main else None
            dist.gather_object(records, gathered, dst=0)
        finally:
            if watcher is not None:
                watcher.stop()
        merged: dict[str, ClipRecord] = {}
        for share in gathered or []:
            merged |= share
        return merged
    finally:
        rank.stop()


class _RankTally:
    """Frames and records of every rank, counted in torchrun's key-value store for rank 0."""

    def __init__(self, rank: Rank, timeout: timedelta) -> None:
        import torch.distributed as dist

        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        self.prefix = f"seggpt-video-batch/{restart}/"
        self.rank, self.size, self.sent = rank.rank, rank.size, 0
        self.store = dist.TCPStore(
            os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), rank.size,
            is_master=False, timeout=timeout,
        )  # fmt: skip

    def frames(self, count: int) -> None:
        self.store.add(self.prefix + "frames", count)

    def record(self, record: ClipRecord) -> None:
        # stored before it is counted, so that whatever rank 0 counts is there to read
        self.store.set(f"{self.prefix}record/{self.rank}/{self.sent}", record.to_json())
        self.sent += 1
        self.store.add(f"{self.prefix}records/{self.rank}", 1)

    def watch(self, on_frames: FramesCallback | None, on_record: RecordCallback | None) -> _Watcher:
        """Hand every rank's new frames and records to the callbacks, twice a second."""
        seen_frames, seen_records = 0, [0] * self.size

        def poll() -> None:
            nonlocal seen_frames
            frames = self.store.add(self.prefix + "frames", 0)
            if on_frames is not None and frames > seen_frames:
                on_frames(frames - seen_frames)
            seen_frames = frames
            for rank in range(self.size):
                count = self.store.add(f"{self.prefix}records/{rank}", 0)
                for index in range(seen_records[rank], count):
                    text = self.store.get(f"{self.prefix}record/{rank}/{index}").decode()
                    if on_record is not None:
                        on_record(ClipRecord.from_json(text))
                seen_records[rank] = count

        return _Watcher(poll)


class _Watcher(threading.Thread):
    """Calls `poll` every `seconds` until stop(), then once more."""

    def __init__(self, poll: Callable[[], None], seconds: float = 0.5) -> None:
        super().__init__(daemon=True)
        self._poll, self._seconds = poll, seconds
        self._stop_event = threading.Event()
        self.start()

    def run(self) -> None:
        while not self._stop_event.wait(self._seconds):
            self._poll()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self._poll()


class _RayWorker:
    """A Ray actor: one model, clips handed to it one at a time, its progress readable meanwhile.

    Made an actor by :func:`run_ray` (ray.remote(max_concurrency=2)), so `progress` answers
    while `segment` runs.
    """

    def __init__(
        self, make_segmenter: SegmenterFactory, output: str, options: ClipOptions, index: int
    ) -> None:
        worker = worker_name(f"ray actor {index}") + f" pid {os.getpid()}"
        self.runner = ClipRunner(make_segmenter, output, options, worker, shared=True)
        self.frames = 0
        self.current: str | None = None

    def load(self, probe: str, token: str) -> str:
        """Check that OUT is the driver's (a shared filesystem), then load the model."""
        try:
            seen = Path(probe).read_text(encoding="utf-8")
        except OSError:
            seen = None
        if seen != token:
            raise UserError(
                f"{self.runner.output}: this output folder is not the one the batch was started "
                f"with, as seen from {socket.gethostname()}; put it on a filesystem every "
                "worker sees"
            )
        self.runner.load()
        return self.runner.worker

    def segment(self, job: ClipJob) -> ClipRecord:
        """Segment one clip (see ClipRunner.segment)."""
        self.current = job.name
        try:
            return self.runner.segment(job, self._count)
        finally:
            self.current = None

    def progress(self) -> tuple[int, str | None]:
        """Frames computed so far by this actor, and the clip it is on."""
        return self.frames, self.current

    def _count(self, frames: int) -> None:
        self.frames += frames


ACTOR_PREFIX = "seggpt-video-batch-"


def run_ray(
    jobs: list[ClipJob],
    make_segmenter: SegmenterFactory,
    output: Path | str,
    options: ClipOptions,
    workers: int | None = None,
    address: str | None = None,
    on_frames: FramesCallback | None = None,
    on_record: RecordCallback | None = None,
    poll_seconds: float = 0.5,
    use_gpus: bool = True,
) -> dict[str, ClipRecord]:
    """Segment `jobs` on Ray actors, each loading the model once; clips go to whichever is free.

    workers: actors to start (default: one per GPU of the cluster, else one per node); on GPUs
    each takes one (use_gpus=False: the model runs on CPUs even there), on CPUs each takes an
    equal share of the cluster's cores. A clip whose actor dies is retried on another (at most
    MAX_ATTEMPTS attempts) and resumes where the dead one stopped. Connects to `address` (or
    the instance this process already started, or a new local one). Actors are named
    ACTOR_PREFIX + a number, in this driver's own namespace.
    """
    try:
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError
    except ImportError:
        raise UserError(
            '--engine ray: Ray is not installed; pip install "seggpt-video[ray]"'
        ) from None
    if not jobs:
        return {}
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, log_to_driver=False, include_dashboard=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise UserError(f"--address {address}: cannot join the Ray cluster ({error})") from None
    output = Path(output).resolve()
    probe = output / RECORDS_FOLDER / f".probe-{uuid.uuid4().hex[:8]}"
    token = uuid.uuid4().hex
    actors: list = []
    try:
        write_text_atomic(probe, token)
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0)) if use_gpus else 0
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        count = min(workers or gpus or max(nodes, 1), len(jobs))
        cpus = max(1, int(resources.get("CPU", 1)) // count)
        placement = {"num_gpus": 1} if gpus else {"num_cpus": cpus}
        actor_class = ray.remote(max_concurrency=2)(_RayWorker)
        spares = count * (MAX_ATTEMPTS - 1)  # replacements for actors that die

        def spawn() -> None:
            index = len(actors)
            actor = actor_class.options(name=f"{ACTOR_PREFIX}{index}", **placement).remote(
                make_segmenter, str(output), options, index
            )
            actors.append(actor)
            loading[actor.load.remote(str(probe), token)] = actor

        loading: dict = {}
        running: dict = {}  # task -> (actor, job)
        idle: list = []
        seen_frames: dict = {}  # actor -> frames reported
        pending = deque(longest_first(jobs))
        attempts = dict.fromkeys((job.name for job in jobs), 0)
        records: dict[str, ClipRecord] = {}
        for _ in range(count):
            spawn()
        last_poll = time.monotonic()
        while pending or running:
            while idle and pending:
                actor, job = idle.pop(), pending.popleft()
                attempts[job.name] += 1
                running[actor.segment.remote(job)] = (actor, job)
            if pending and not (running or loading or idle):
                for job in pending:  # every worker died and no spare is left
                    records[job.name] = ClipRecord(
                        job.name, str(job.video), "failed", error="no Ray worker left to run it"
                    )
                    if on_record is not None:
                        on_record(records[job.name])
                break
            ready, _ = ray.wait([*running, *loading], num_returns=1, timeout=poll_seconds)
            for ref in ready:
                if ref in loading:
                    actor = loading.pop(ref)
                    try:
                        ray.get(ref)
                        idle.append(actor)
                    except RayTaskError as error:
                        raise _user_error(error) from None
                    except RayActorError:
                        if spares > 0:
                            spares -= 1
                            spawn()
                    continue
                actor, job = running.pop(ref)
                try:
                    record = ray.get(ref)
                    idle.append(actor)
                except RayActorError as error:
                    if spares > 0:
                        spares -= 1
                        spawn()
                    if attempts[job.name] < MAX_ATTEMPTS:
                        pending.appendleft(job)  # its state folder makes the retry resume
                        continue
                    record = ClipRecord(
                        job.name,
                        str(job.video),
                        "failed",
                        error=_one_line(
                            f"{job.video}: its Ray worker died {MAX_ATTEMPTS} times "
                            f"({error.__class__.__name__})"
                        ),
                    )
                except RayTaskError as error:
                    raise _user_error(error) from None
                records[job.name] = record
                if on_record is not None:
                    on_record(record)
            if on_frames is not None and time.monotonic() - last_poll >= poll_seconds:
                last_poll = time.monotonic()
                live = [*idle, *(actor for actor, _ in running.values())]
                _poll_frames(ray, live, seen_frames, on_frames, GetTimeoutError, RayActorError)
        return records
    finally:
        for actor in actors:
            ray.kill(actor)
        probe.unlink(missing_ok=True)
        if started:
            ray.shutdown()


def _poll_frames(ray, actors: list, seen: dict, on_frames: FramesCallback, *errors) -> None:
    """Hand the frames each actor computed since the last poll to `on_frames`."""
    if not actors:
        return
    asks = {actor.progress.remote(): actor for actor in actors}
    ready, _ = ray.wait(list(asks), num_returns=len(asks), timeout=1.0)
    for ref in ready:
        try:
            frames, _ = ray.get(ref)
        except errors:
            continue
        actor = asks[ref]
        new = frames - seen.get(actor, 0)
        seen[actor] = frames
        if new > 0:
            on_frames(new)


def _user_error(error: Exception) -> Exception:
    """A worker's UserError as one line (Ray wraps it with the worker's traceback)."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, UserError):
        return UserError(str(cause))
    return error
