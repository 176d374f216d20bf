"""One video through the engine into the writers, with decoding, model and writing overlapped.

A reader thread decodes ahead into a bounded queue, the calling thread runs the model, and a
writer thread encodes behind another bounded queue: memory stays flat however long the video.
A re-run resumes: frames whose label PNGs an earlier run wrote are read back instead of
recomputed (the last K of them become the prompt memory again).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from seggpt_video.engine import Segmenter
from seggpt_video.io.video import VideoSource
from seggpt_video.io.writers import PalettePNGWriter, SummaryWriter, Writer

_END = object()


@dataclass
class RunReport:
    """What a run did: frames computed and resumed, and seconds spent per stage."""

    frames: int = 0
    resumed: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def frames_per_second(self) -> float:
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


def resume_point(writers: list[Writer], num_frames: int) -> int:
    """First frame that some label PNG output lacks (0 when no output holds labels)."""
    label_writers = [w for w in writers if isinstance(w, PalettePNGWriter)]
    if not label_writers:
        return 0
    for index in range(num_frames):
        if not all(w.done(index) for w in label_writers):
            return index
    return num_frames


def segment_video(
    video: VideoSource,
    annotations: dict[int, np.ndarray],
    segmenter: Segmenter,
    writers: list[Writer],
    resume: bool = True,
    on_frame: Callable[[int], None] | None = None,
    queue_size: int = 8,
) -> RunReport:
    """Segment ``video`` from ``annotations`` (frame -> (H, W) uint8 ids) into ``writers``.

    Writers are closed when all frames are written and aborted on any error (Ctrl-C
    included), so no output is left half-written under its final name.
    """
    num_frames = video.info.num_frames
    start = resume_point(writers, num_frames) if resume else 0
    labels_source = next((w for w in writers if isinstance(w, PalettePNGWriter)), None)

    def known(index: int) -> np.ndarray | None:
        if index >= start or labels_source is None:
            return None
        with Image.open(labels_source.frame_path(index)) as image:
            return np.array(image, dtype=np.uint8)

    stop = threading.Event()
    frames_q: queue.Queue = queue.Queue(maxsize=queue_size + segmenter.options.batch_size)
    write_q: queue.Queue = queue.Queue(maxsize=queue_size)

    def read() -> None:
        clock = time.perf_counter()
        for item in video.iter_frames():
            reader.busy_seconds += time.perf_counter() - clock
            if not _put(frames_q, item, stop.is_set):
                return
            clock = time.perf_counter()
        _put(frames_q, _END, stop.is_set)

    def write() -> None:
        while True:
            item = write_q.get()
            if item is _END:
                return
            clock = time.perf_counter()
            index, frame, labels = item
            for writer in writers:
                if index >= start or not writer.done(index):
                    writer.write(index, frame, labels)
            writer_thread.busy_seconds += time.perf_counter() - clock

    reader, writer_thread = _Worker(read), _Worker(write)

    def writer_dead() -> bool:
        return not writer_thread.is_alive()

    pending: deque = deque()
    waited = 0.0

    def frames() -> Iterator[np.ndarray]:
        nonlocal waited
        while True:
            clock = time.perf_counter()
            item = frames_q.get()
            waited += time.perf_counter() - clock
            if item is _END:
                return
            pending.append(item)
            yield item[1]

    report = RunReport(resumed=start)
    began = time.perf_counter()
    reader.start()
    writer_thread.start()
    try:
        known_fn = known if start > 0 else None
        for index, labels in segmenter.propagate(frames(), annotations, known_fn):
            frame_index, frame = pending.popleft()
            assert frame_index == index, (frame_index, index)
            clock = time.perf_counter()
            if not _put(write_q, (index, frame, labels), writer_dead):
                writer_thread.check()
            waited += time.perf_counter() - clock
            reader.check()
            report.frames += 1
            if on_frame is not None:
                on_frame(index)
        reader.check()
        _put(write_q, _END, writer_dead)
        writer_thread.join()
        writer_thread.check()
        for writer in writers:
            if isinstance(writer, SummaryWriter):
                writer.timings = _timings(report, began, reader, writer_thread, waited)
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
    report.seconds = _timings(report, began, reader, writer_thread, waited)
    return report


def _timings(
    report: RunReport, began: float, reader: _Worker, writer: _Worker, waited: float
) -> dict[str, float]:
    total = time.perf_counter() - began
    return {
        "total": round(total, 3),
        "decode": round(reader.busy_seconds, 3),
        "model_and_pre_post": round(max(total - waited, 0.0), 3),
        "write": round(writer.busy_seconds, 3),
    }
