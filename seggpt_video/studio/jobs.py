"""Propagation in the background: one run at a time of ``write``, with events for the page.

A run is exactly ``VideoSegmenter.write`` (= `seggpt-video run`) into ``OUT/results`` with the
annotations as ``masks``: after a correction at frame N it restarts there (``restart_from``),
so frames before N are read back untouched. Cancel raises from ``on_frame``: the library
aborts its writers and keeps the finished frames, and the next run resumes.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from seggpt_video.errors import UserError
from seggpt_video.studio.frames import FrameStore
from seggpt_video.studio.project import Conflict, Project

if TYPE_CHECKING:
    from seggpt_video.api import VideoSegmenter
    from seggpt_video.engine import SegmentedFrame

EVENTS_KEPT = 5000


class Cancelled(Exception):
    """Raised from on_frame to stop a run (the library keeps what is done)."""


class EventLog:
    """Numbered events (dicts) for server-sent events; a client asks for those after the last
    number it saw. The oldest are dropped past EVENTS_KEPT (a client that far behind reloads)."""

    def __init__(self) -> None:
        self._events: deque[tuple[int, dict]] = deque(maxlen=EVENTS_KEPT)
        self._lock = threading.Lock()
        self.last = 0

    def add(self, event: dict) -> None:
        with self._lock:
            self.last += 1
            self._events.append((self.last, event))

    def since(self, seen: int) -> list[tuple[int, dict]]:
        with self._lock:
            if seen >= self.last:
                return []
            return [(number, event) for number, event in self._events if number > seen]


class Propagation:
    """Runs ``segmenter.write`` in a thread; at most one at a time (a second one is a Conflict)."""

    def __init__(
        self,
        project: Project,
        store: FrameStore,
        segmenter: VideoSegmenter,
        examples: list[str],
        events: EventLog,
    ) -> None:
        self.project, self.store, self.segmenter = project, store, segmenter
        self.examples = list(examples)
        self.events = events
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._loader: threading.Thread | None = None
        self.state: dict = {"running": False, "kind": None, "done": 0, "total": None}

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def warm_up(self) -> None:
        """Load the model in the background, so that the first propagation starts at once."""
        self._loader = threading.Thread(
            target=self._load_quietly, name="studio-load-model", daemon=True
        )
        self._loader.start()

    def _load_quietly(self) -> None:
        try:
            self.segmenter.engine  # noqa: B018 - loads the model
        except Exception:  # noqa: BLE001 - the run that needs it reports the error
            pass

    def start(self, kind: str = "propagate", formats: list[str] | None = None) -> dict:
        """Start a run (kind "propagate" or "export" with extra formats); Conflict if one runs."""
        with self.project.lock:
            if self.running:
                raise Conflict("a propagation is already running; cancel it or wait")
            if not self.project.masks() and not self.examples:
                raise UserError(
                    "nothing to propagate: annotate frame 0 (box, brush or an imported mask) first"
                )
            if 0 not in self.project.masks() and not self.examples:
                raise UserError("frame 0 needs an annotation: propagation starts there")
            if formats:
                from seggpt_video.io.writers import FORMATS

                unknown = [name for name in formats if name not in FORMATS]
                if unknown:
                    raise UserError(
                        f"formats: {unknown[0]!r} is unknown (choose from {', '.join(FORMATS)})"
                    )
                self.project.formats = list(dict.fromkeys([*self.project.formats, *formats]))
                self.project.save()
            self._cancel.clear()
            self.state = {"running": True, "kind": kind, "done": 0, "total": None}
            self._thread = threading.Thread(
                target=self._run, args=(kind,), name="studio-propagation", daemon=True
            )
            self._thread.start()
            return dict(self.state)

    def cancel(self) -> bool:
        """Ask the running propagation to stop after the frame in hand; False if none runs."""
        if not self.running:
            return False
        self._cancel.set()
        return True

    def shutdown(self, timeout: float = 10.0) -> None:
        """Cancel and wait for the run to end (Ctrl-C): its writers abort, done frames stay."""
        self._cancel.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, kind: str) -> None:
        project = self.project
        began = time.perf_counter()
        try:
            from seggpt_video.clip import SETTINGS_FILE

            if self._loader is not None:
                self._loader.join()
            if self._cancel.is_set():
                raise Cancelled
            with project.lock:
                masks = project.masks()
                stale = project.stale_from
                formats = list(project.formats)
            earlier = (project.results_dir / SETTINGS_FILE).exists()
            overwrite = earlier and stale == 0
            restart = stale if earlier and stale else None
            source = self.store.source()
            total = source.info.num_frames
            self.state.update(total=total, restart_from=restart)
            self.events.add(
                {"type": "start", "kind": kind, "total": total, "restart_from": restart or 0}
            )
            if overwrite:
                project.forget_areas(0)
            elif restart is not None:
                project.forget_areas(restart)
            report = self.segmenter.write(
                source,
                project.results_dir,
                formats=formats,
                masks=masks,
                examples=self.examples or None,
                overwrite=overwrite,
                restart_from=restart,
                on_frame=self._on_frame(stale),
            )
        except Cancelled:
            self._finish("cancelled", began, message="cancelled; finished frames are kept")
        except UserError as error:
            self._finish("failed", began, message=str(error))
        except Exception as error:  # noqa: BLE001 - shown on the page, the server goes on
            self._finish("failed", began, message=f"{type(error).__name__}: {error}")
        else:
            project.clear_stale()
            self._finish(
                "finished",
                began,
                frames=report.frames,
                resumed=report.resumed,
                frames_per_second=round(report.frames_per_second, 3),
            )

    def _on_frame(self, stale: int | None) -> Callable[[SegmentedFrame], None]:
        project, state = self.project, self.state
        first = [True]

        def on_frame(frame: SegmentedFrame) -> None:
            if first[0]:
                # the library has recorded the new annotations and forgotten the stale frames:
                # from now on a plain re-run (after a cancel) resumes correctly
                first[0] = False
                if stale is not None:
                    project.clear_stale()
            areas = project.record_areas(frame.index, frame.labels)
            state["done"] = state.get("done", 0) + 1
            self.events.add(
                {
                    "type": "frame",
                    "index": frame.index,
                    "recalled": frame.recalled,
                    "done": state["done"],
                    "total": state.get("total"),
                    "areas": {str(k): v for k, v in areas.items()},
                }
            )
            if self._cancel.is_set():
                raise Cancelled

        return on_frame

    def _finish(self, outcome: str, began: float, **details: object) -> None:
        seconds = round(time.perf_counter() - began, 3)
        self.state.update(running=False, outcome=outcome, seconds=seconds, **details)
        self.events.add({"type": outcome, "seconds": seconds, **details})
