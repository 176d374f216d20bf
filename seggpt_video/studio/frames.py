"""Frames for the page: decoded one at a time by run's decoder, sent as JPEG at display size.

`open_video` decodes a whole file once to count its frames (about 10 s for a 1080p,
1,000-frame H.264 clip on a busy 2-core machine), so the store shows frame 0 at once from a
first-frame decode and counts in a background thread; until then only frame 0 is served. Nothing
holds more than one decoded frame plus a small cache of JPEGs (a few MB), however long the video.

A frame a little after the last one served is decoded forward from it (the page following a
run, or playing) rather than by a seek, which re-opens the file and decodes again from the
keyframe before the frame: for every frame shown, beside the model in the same process.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from seggpt_video.errors import UserError
from seggpt_video.io.video import VideoInfo, VideoSource, open_video

JPEG_QUALITY = 85
JPEG_CACHE = 64  # encoded frames kept (about 50 KB each at 960 px wide)
MIN_WIDTH = 16
READ_FORWARD = 32  # frames decoded forward from the last one served rather than seeking


class FrameStore:
    """One video, opened once, shared by the page (random access) and propagation (in order)."""

    def __init__(self, path: Path | str, backend: str = "auto") -> None:
        """Read frame 0 now (UserError for a missing or unreadable video); count in background."""
        self.path = Path(path)
        self.backend = backend
        self.warnings: list[str] = []
        self.error: str | None = None
        self._source: VideoSource | None = None
        self._ready = threading.Event()
        self._decode_lock = threading.Lock()
        self._cache: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._cursor: Iterator[tuple[int, np.ndarray]] | None = None  # see _decode_forward
        self._cursor_next = 0
        if self.path.is_dir():
            self._open()  # a folder opens fast: its files are listed, not decoded
            assert self._source is not None
            self.first = self._source.get_frame(0)
            return
        if not self.path.exists():
            raise UserError(f"{self.path}: no such file or folder")
        self.first = first_frame(self.path)
        self._thread = threading.Thread(target=self._open, name="studio-open-video", daemon=True)
        self._thread.start()

    def _open(self) -> None:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self._source = open_video(self.path, backend=self.backend)
            self.warnings = [str(w.message) for w in caught]
        except UserError as error:
            self.error = str(error)
        finally:
            self._ready.set()

    @property
    def height(self) -> int:
        return self.first.shape[0]

    @property
    def width(self) -> int:
        return self.first.shape[1]

    @property
    def info(self) -> VideoInfo | None:
        """The video's info once its frames are counted, else None."""
        return self._source.info if self._source is not None else None

    def wait(self, timeout: float | None = None) -> VideoInfo:
        """Block until the frames are counted; UserError if the video turned out unreadable."""
        if not self._ready.wait(timeout):
            raise UserError(f"{self.path}: still counting the video's frames")
        if self._source is None:
            raise UserError(self.error or f"{self.path}: cannot read the video")
        return self._source.info

    def frame(self, index: int) -> np.ndarray:
        """Frame `index`, (H, W, 3) uint8 RGB (frame 0 is served before the count is done)."""
        if self._source is None:
            if index == 0:
                return self.first
            self.wait(0)
        assert self._source is not None
        if not 0 <= index < self._source.info.num_frames:
            raise IndexError(index)
        with self._decode_lock:  # one reader, one position
            if self._source.info.backend != "pyav":
                # a folder: one file a frame, nothing to decode forward; decord: its own index,
                # and its forward reader would decode the whole clip ahead (seggpt_video.io.video)
                return self._source.get_frame(index)
            return self._decode_forward(index)

    def _decode_forward(self, index: int) -> np.ndarray:
        """Frame `index` from the open reader when it lies just ahead, else from a new one."""
        if (
            self._cursor is not None
            and self._cursor_next <= index < self._cursor_next + READ_FORWARD
        ):
            for found, frame in self._cursor:
                if found == index:
                    self._cursor_next = index + 1
                    return frame
        if self._cursor is not None:
            self._cursor.close()
        self._cursor = self._source.iter_frames(index)
        found, frame = next(self._cursor)
        self._cursor_next = found + 1
        return frame

    def jpeg(self, index: int, width: int | None = None) -> bytes:
        """Frame `index` as JPEG bytes, `width` pixels wide at most (rounded to 16 px)."""
        width = self.display_width(width)
        key = (index, width)
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        data = encode_jpeg(self.frame(index), width)
        with self._cache_lock:
            self._cache[key] = data
            while len(self._cache) > JPEG_CACHE:
                self._cache.popitem(last=False)
        return data

    def display_width(self, width: int | None) -> int:
        """The width a frame is sent at: the request's, rounded up to 16 px, at most the video's."""
        if width is None or width >= self.width:
            return self.width
        return max(MIN_WIDTH, min(self.width, -(-width // 16) * 16))

    def source(self) -> VideoSource:
        """The video for one propagation run: the shared source, which a run's close() keeps."""
        self.wait()
        assert self._source is not None
        return _Borrowed(self._source)

    def close(self) -> None:
        with self._decode_lock:
            if self._cursor is not None:
                self._cursor.close()
                self._cursor = None
        if self._source is not None:
            self._source.close()


class _Borrowed(VideoSource):
    """A source lent to one run: frames in order from the shared source; close() leaves it open.

    Each backend's iter_frames opens its own reader, so a run and the page's random access do
    not share a decoding position.
    """

    def __init__(self, source: VideoSource) -> None:
        self._shared = source
        self.info = source.info

    def iter_frames(self, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        return self._shared.iter_frames(start)

    def get_frame(self, index: int) -> np.ndarray:
        return self._shared.get_frame(index)


def first_frame(path: Path) -> np.ndarray:
    """Frame 0 of a video file, upright, as PyAV decodes it (what `open_video` checks against).

    Returns (H, W, 3) uint8 RGB; UserError naming the file when it holds no decodable frame.
    """
    # the reader's own helpers: the same colour conversion and display rotation as `run`
    from seggpt_video.io.video import _decode, _open_container, _upright_rgb

    container, stream = _open_container(path)
    with container:
        for frame in _decode(container, stream):
            rotation = round(frame.rotation / 90) % 4 * 90
            return _upright_rgb(frame, rotation)
    raise UserError(f"{path}: no frame could be decoded; the file is damaged or empty")


def encode_jpeg(frame: np.ndarray, width: int) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes, resized to `width` (aspect kept) when smaller."""
    image = Image.fromarray(frame)
    if width < image.width:
        height = max(1, round(image.height * width / image.width))
        image = image.resize((width, height), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()
