"""The one path a frame takes: decoded, segmented by the engine, written by every output.

`run`, `eval`, `demo` and `batch` all call :func:`segment_video`, each with its own source and
writers. A reader thread decodes ahead into a bounded queue, the calling thread runs the model,
and a writer thread encodes behind another bounded queue: memory stays flat however long the
video. With a :class:`RunState` a re-run resumes: frames the earlier run finished are read back
instead of computed, and the result equals a run never interrupted.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from seggpt_video.engine import Example, SegmentedFrame, Segmenter
from seggpt_video.io.state import RunState
from seggpt_video.io.video import VideoSource
from seggpt_video.io.writers import Writer

_END = object()


@dataclass
class RunReport:
    """What a run did: frames handed out and read back, and seconds spent per stage."""

    frames: int = 0
    resumed: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def frames_per_second(self) -> float:
        """Frames computed (not read back) per second of the whole run."""
        computed = self.frames - self.resumed
        return computed / self.seconds["total"] if self.seconds.get("total") else 0.0


class _Worker(threading.Thread):
    """A daemon thread whose exception is re-raised in the caller by ``check``."""

    def __init__(self, target: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self._target_fn = target
        self.error: BaseException | None = None
        self.busy_seconds = 0.0

    def run(self) -> None:
        try:
            self._target_fn()
        except BaseException as error:  # handed to the main thread
            self.error = error

    def check(self) -> None:
        if self.error is not None:
            raise self.error


def _put(q: queue.Queue, item: object, give_up: Callable[[], bool]) -> bool:
    """Put into a bounded queue, waiting for room; False if ``give_up()`` turns true first."""
    while not give_up():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def segment_video(
    video: VideoSource,
    annotations: dict[int, np.ndarray],
    segmenter: Segmenter,
    writers: list[Writer],
    state: RunState | None = None,
    on_frame: Callable[[SegmentedFrame], None] | None = None,
    queue_size: int = 8,
    examples: list[Example] | None = None,
) -> RunReport:
    """Segment ``video`` from ``annotations`` (frame -> (H, W) uint8 ids) into ``writers``.

    state: what an earlier run into the same place finished (resumed from) and where this run
    keeps its own progress; None: compute every frame and keep nothing. examples: prompts from
    outside the video, for every frame (see Segmenter.propagate). on_frame is called with
    every frame as it is handed to the writers. Writers are closed when all frames are written
    and aborted on any error (Ctrl-C included), so no output is left half-written.
    """
    num_frames = video.info.num_frames
    start = 0
    if state is not None:
        start = segmenter.resume_point(state.first_unfinished(), annotations, num_frames)

    stop = threading.Event()
    frames_q: queue.Queue = queue.Queue(maxsize=queue_size + segmenter.options.batch_size)
    write_q: queue.Queue = queue.Queue(maxsize=queue_size)

    def read() -> None:
        clock = time.perf_counter()
        for _, frame in video.iter_frames():
            reader.busy_seconds += time.perf_counter() - clock
            if not _put(frames_q, frame, stop.is_set):
                return
            clock = time.perf_counter()
        _put(frames_q, _END, stop.is_set)

    def write() -> None:
        while True:
            item: SegmentedFrame = write_q.get()
            if item is _END:
                return
            clock = time.perf_counter()
            for writer in writers:
                if not (item.recalled and writer.done(item.index)):
                    writer.write(item.index, item.frame, item.labels, alpha=item.alpha)
            if state is not None and not item.recalled:
                state.record(item.index, item.labels, item.model_labels, alpha=item.alpha)
            writer_thread.busy_seconds += time.perf_counter() - clock

    reader, writer_thread = _Worker(read), _Worker(write)

    def writer_dead() -> bool:
        return not writer_thread.is_alive()

    waited = 0.0

    def frames() -> Iterator[np.ndarray]:
        nonlocal waited
        while True:
            clock = time.perf_counter()
            item = frames_q.get()
            waited += time.perf_counter() - clock
            if item is _END:
                return
            yield item

    report = RunReport(resumed=start)
    began = time.perf_counter()
    reader.start()
    writer_thread.start()
    try:
        propagation = segmenter.propagate(
            frames(), annotations, state, resume_from=start, examples=examples
        )
        for result in propagation:
            clock = time.perf_counter()
            if not _put(write_q, result, writer_dead):
                writer_thread.check()
            waited += time.perf_counter() - clock
            reader.check()
            report.frames += 1
            if on_frame is not None:
                on_frame(result)
        reader.check()
        _put(write_q, _END, writer_dead)
        writer_thread.join()
        writer_thread.check()
        timings = _timings(began, reader, writer_thread, waited)
        for writer in writers:
            writer.record_timings(timings)
            writer.close()
    except BaseException:
        stop.set()
        _put(write_q, _END, writer_dead)
        writer_thread.join(timeout=10)
        for writer in writers:
            writer.abort()
        raise
    finally:
        stop.set()
        reader.join(timeout=10)
    report.seconds = _timings(began, reader, writer_thread, waited)
    return report


def _timings(began: float, reader: _Worker, writer: _Worker, waited: float) -> dict[str, float]:
    total = time.perf_counter() - began
    return {
        "total": round(total, 3),
        "decode": round(reader.busy_seconds, 3),
        "model_and_pre_post": round(max(total - waited, 0.0), 3),
        "write": round(writer.busy_seconds, 3),
    }
