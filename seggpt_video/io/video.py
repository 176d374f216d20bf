"""Video input: a video file (decord or PyAV) or a folder of frames, streamed frame by frame.

`open_video` first decodes the whole file once with PyAV, without colour conversion, to learn what
the file really holds: the number of frames that decode (never the header's guess), each frame's
timestamp (variable frame rate is kept) and the display rotation. Frames are then streamed one at a
time by the chosen backend; with PyAV (the default) nothing holds more than a frame or two in
memory, so 4K and hour-long clips work.

decord is not the default: its reader keeps decoding in a background thread after every read,
without bound, whether or not the frames are asked for (dmlc/decord issues 157, 208). Behind a
model that takes 0.1-5 s a frame, `run --frames 0:100` on a 1080p, 1,000-frame clip peaked at
6.5 GB resident with decord (the whole clip decoded) and 0.87 GB with PyAV, and ran slower
(3.46 against 4.35 frames/s: the read-ahead takes CPU from the model). Decoding speed alone is
the same within noise (docs/performance.md), so nothing is lost. `backend="decord"` still reads
with it: random access stops its read-ahead after each frame (a seek back to 0, the workaround
from those issues), streaming cannot, and a long clip gets a VideoWarning saying so.

Damaged files: a video whose data stops early (a file cut in half, an interrupted download) is
read up to the last frame that decodes cleanly, with a `VideoWarning` naming the file and saying how
many frames are kept; `info.num_frames` counts only those. A file without a single decodable frame,
one that is not a video, or an MP4/MOV cut before its index (the "moov" box, written at the end by
most encoders) raises UserError naming the file.

Rotation: phones store portrait video as landscape pixels plus a display rotation. Frames are
returned upright (as players show them) and `info.width`/`info.height` are the displayed size.
decord mishandles rotated files (observed with decord 0.6: broken 4-channel frames for a rotated
MP4, rotation ignored for MKV), so rotated files are always read with PyAV.
"""

from __future__ import annotations

import itertools
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from seggpt_video.errors import UserError

BACKENDS = ("auto", "decord", "pyav")
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
DEFAULT_FOLDER_FPS = 24.0  # DAVIS frames were shot at 24 fps; a folder carries no frame rate
_EXIF_ORIENTATION = 0x0112
_DECORD_TOLERANCE = 16.0  # mean grey levels between decord's and PyAV's first frame
_DECORD_WARN_BYTES = 2**30  # a clip that would take more than this decoded warns with decord
_SHORT_BY_SECONDS = 0.25  # a file this much shorter than its header says is reported as truncated


class VideoWarning(UserWarning):
    """A video read only in part (e.g. a truncated file); the message names the file."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video source holds, as the frames come out of `iter_frames`.

    rotation: display rotation stored in the file, degrees counter-clockwise (0, 90, 180, 270);
    already applied to the frames. timestamps: presentation time of each frame in seconds from the
    first frame (None for a folder of frames: constant `fps`). frame_names: a name per frame for
    output files: "00000", "00001", ... for a video file, the file stems for a folder.
    """

    path: Path
    num_frames: int
    fps: float
    width: int
    height: int
    rotation: int
    timestamps: tuple[float, ...] | None
    backend: str
    frame_names: tuple[str, ...]

    @property
    def name(self) -> str:
        """The sequence name: the file name without extension, or the folder name."""
        return self.path.name if self.backend == "folder" else self.path.stem


class VideoSource:
    """Frames of one video, streamed in order or fetched by index; close() when done."""

    info: VideoInfo

    def iter_frames(self, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (index, frame) from frame `start` to the end.

        frame: (H, W, 3) uint8 RGB, upright, H = info.height, W = info.width.
        """
        raise NotImplementedError

    def get_frame(self, index: int) -> np.ndarray:
        """One frame by index: (H, W, 3) uint8 RGB."""
        _check_index(index, self.info.num_frames)
        frames = self.iter_frames(index)
        try:
            return next(frames)[1]
        finally:
            frames.close()

    def close(self) -> None:
        """Release the file handles."""

    def __len__(self) -> int:
        return self.info.num_frames

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        return self.iter_frames()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_video(
    path: Path | str, backend: str = "auto", fps: float = DEFAULT_FOLDER_FPS
) -> VideoSource:
    """Open a video file or a folder of .jpg/.png frames (sorted naturally: 2.png before 10.png).

    backend: "auto" or "pyav" (PyAV, constant memory) or "decord" (refused where it would read
    the file wrongly; reads ahead without bound, see the module's docstring); ignored for a
    folder. fps: frame rate of a folder of frames (files carry their own).
    Decodes the file once to count its frames. A truncated file gives the frames that decode and
    a VideoWarning; a file with none, or that is not a video, raises UserError naming it.
    """
    if backend not in BACKENDS:
        raise UserError(f"unknown video backend {backend!r} (choose from {', '.join(BACKENDS)})")
    path = Path(path)
    if path.is_dir():
        return FrameFolder(path, fps)
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    probe = _probe(path)
    if backend == "decord":
        return DecordVideo(path, probe)
    return PyAVVideo(path, probe)


class FrameRange(VideoSource):
    """Frames ``start`` to ``end - 1`` of another source, as a video of their own.

    Indices start at 0 again; frame names stay the source's (outputs say which frames they are)
    and timestamps start at 0 (an encoded output starts at its first frame).
    """

    def __init__(self, source: VideoSource, start: int, end: int) -> None:
        count = source.info.num_frames
        if not 0 <= start < end <= count:
            raise UserError(
                f"{source.info.path}: frames {start}:{end} are not a range of this video's "
                f"{count} frames (0 to {count - 1})"
            )
        self.source, self.start, self.end = source, start, end
        stamps = source.info.timestamps
        if stamps is not None:
            stamps = tuple(t - stamps[start] for t in stamps[start:end])
        self.info = replace(
            source.info,
            num_frames=end - start,
            frame_names=source.info.frame_names[start:end],
            timestamps=None
            if stamps is None
            else tuple(t - stamps[start] for t in stamps[start:end]),
        )

    def iter_frames(self, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        for index, frame in self.source.iter_frames(self.start + start):
            if index >= self.end:
                return
            yield index - self.start, frame

    def get_frame(self, index: int) -> np.ndarray:
        _check_index(index, self.info.num_frames)
        return self.source.get_frame(self.start + index)

    def close(self) -> None:
        self.source.close()


# --- probing a file with PyAV -------------------------------------------------------------------


@dataclass(frozen=True)
class _Probe:
    """The truth about a video file, learnt by decoding it once."""

    pts: tuple[int | None, ...]  # per decodable frame, in stream time_base
    timestamps: tuple[float, ...]
    fps: float
    width: int  # displayed (after rotation)
    height: int
    rotation: int
    first_frame: np.ndarray  # (H, W, 3) uint8 RGB upright, as PyAV decodes it


def _decode(
    container: av.container.InputContainer, stream: av.VideoStream, damage: list[str] | None = None
) -> Iterator[av.VideoFrame]:
    """Decoded frames in presentation order, stopping cleanly at the first damaged packet.

    The reason for an early stop is appended to `damage`.
    """
    try:
        for packet in container.demux(stream):
            if packet.is_corrupt:
                reason = "incomplete data"
                break
            yield from packet.decode()
        else:
            return  # the final empty packet of demux() has flushed the decoder
    except av.FFmpegError as error:
        reason = _reason(error)
    if damage is not None:
        damage.append(reason)
    try:
        yield from stream.codec_context.decode(None)  # frames still inside the decoder
    except av.FFmpegError:
        pass


def _open_container(path: Path) -> tuple[av.container.InputContainer, av.VideoStream]:
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as error:
        raise UserError(f"{path}: cannot read it as a video ({_reason(error)})") from None
    if not container.streams.video:
        container.close()
        raise UserError(f"{path}: the file has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def _reason(error: Exception) -> str:
    """FFmpeg's message without the file name it repeats."""
    text = getattr(error, "strerror", None) or str(error)
    return text.split(": '")[0]


def _probe(path: Path) -> _Probe:
    container, stream = _open_container(path)
    damage: list[str] = []
    pts: list[int | None] = []
    rotation, first_frame = 0, None
    with container:
        for frame in _decode(container, stream, damage):
            if first_frame is None:
                rotation = round(frame.rotation / 90) % 4 * 90
                first_frame = _upright_rgb(frame, rotation)
            pts.append(frame.pts)
        declared = _declared_seconds(container, stream)
        time_base = stream.time_base or Fraction(1, 1)
        rate = stream.average_rate or stream.guessed_rate
    if not pts:
        raise UserError(f"{path}: no frame could be decoded; the file is damaged or empty")

    timestamps = _timestamps(pts, time_base)
    if timestamps is None:  # no usable timestamps: assume a constant frame rate
        fps = float(rate) if rate else 25.0
        timestamps = tuple(i / fps for i in range(len(pts)))
    elif len(pts) > 1 and (not rate or _is_variable(timestamps, float(rate))):
        fps = (len(pts) - 1) / timestamps[-1]  # the mean rate of a variable-rate video
    else:
        fps = float(rate) if rate else 25.0

    kept = f"{len(pts)} frames ({timestamps[-1] + 1 / fps:.2f} s)"
    if damage:
        _warn(
            f"{path}: the video is damaged or truncated ({damage[0]}); using the {kept} before it"
        )
    elif declared and declared - (timestamps[-1] + 1 / fps) > max(_SHORT_BY_SECONDS, 2 / fps):
        _warn(
            f"{path}: the file says it lasts {declared:.2f} s but only {kept} decode; "
            "it may be truncated"
        )

    height, width = first_frame.shape[:2]
    return _Probe(tuple(pts), timestamps, fps, width, height, rotation, first_frame)


def _upright_rgb(frame: av.VideoFrame, rotation: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a decoded frame, turned by its display rotation."""
    rgb = frame.to_ndarray(format="rgb24")
    return np.ascontiguousarray(np.rot90(rgb, rotation // 90)) if rotation else rgb


def _timestamps(pts: list[int | None], time_base: Fraction) -> tuple[float, ...] | None:
    """Seconds from the first frame, or None when the file's timestamps are missing or unordered."""
    if any(p is None for p in pts) or any(b <= a for a, b in itertools.pairwise(pts)):
        return None
    return tuple(float((p - pts[0]) * time_base) for p in pts)


def _is_variable(timestamps: tuple[float, ...], fps: float) -> bool:
    return any(abs(t - i / fps) > 0.5 / fps for i, t in enumerate(timestamps))


def _declared_seconds(container: av.container.InputContainer, stream: av.VideoStream) -> float:
    """The video duration the header claims (0 if unknown or not the video's own)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and len(container.streams) == 1:
        return container.duration / av.time_base
    return 0.0


def _warn(message: str) -> None:
    warnings.warn(VideoWarning(message), stacklevel=4)


def _video_frame_names(count: int) -> tuple[str, ...]:
    digits = max(5, len(str(count - 1)))
    return tuple(f"{i:0{digits}d}" for i in range(count))


def _check_index(index: int, count: int) -> None:
    if not 0 <= index < count:
        raise IndexError(f"frame {index} out of range: the video has {count} frames")


def _info(path: Path, probe: _Probe, backend: str) -> VideoInfo:
    return VideoInfo(
        path=path,
        num_frames=len(probe.pts),
        fps=probe.fps,
        width=probe.width,
        height=probe.height,
        rotation=probe.rotation,
        timestamps=probe.timestamps,
        backend=backend,
        frame_names=_video_frame_names(len(probe.pts)),
    )


# --- backends -----------------------------------------------------------------------------------


class PyAVVideo(VideoSource):
    """A video file decoded by PyAV (FFmpeg); seeks by timestamp, applies rotation."""

    def __init__(self, path: Path, probe: _Probe) -> None:
        self.info = _info(path, probe, "pyav")
        self._pts = probe.pts

    def iter_frames(self, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        count = self.info.num_frames
        if start != count:
            _check_index(start, count)
        index = start
        for frame in self._frames_from(start):
            if index == count:
                break
            yield index, _upright_rgb(frame, self.info.rotation)
            index += 1
        if index < count:
            raise UserError(f"{self.info.path}: decoding stopped at frame {index} of {count}")

    def _frames_from(self, start: int) -> Iterator[av.VideoFrame]:
        """Decoded frames from `start` on: seek to the keyframe before it, else decode from 0."""
        target = self._pts[start] if 0 < start < len(self._pts) else None
        if target is not None:
            container, stream = _open_container(self.info.path)
            with container:
                try:
                    container.seek(target, stream=stream)
                except av.FFmpegError:
                    frames = iter(())  # cannot seek: decode from the first frame below
                else:
                    frames = _decode(container, stream)
                for frame in frames:
                    if frame.pts is not None and frame.pts < target:
                        continue
                    if frame.pts == target:
                        yield frame
                        yield from frames
                        return
                    break  # the seek landed after the target: the file's index is unreliable
        container, stream = _open_container(self.info.path)
        with container:
            yield from itertools.islice(_decode(container, stream), start, None)


class DecordVideo(VideoSource):
    """A video file decoded by decord; refuses files it would read wrongly (UserError).

    decord 0.6 returns broken 4-channel frames for some sizes (e.g. 48 or 72 pixels wide) and
    ignores or mangles display rotation, so its first frame must match PyAV's before it is used.
    """

    def __init__(self, path: Path, probe: _Probe) -> None:
        import decord  # imported here: only this backend needs it

        # Its FFmpeg would print "Read error" lines on stderr for a damaged file; the PyAV probe
        # has already judged the file, and decord's own failures come back as exceptions.
        decord.logging.set_level(decord.logging.QUIET)
        if probe.rotation:
            raise UserError(
                f"{path}: decord ignores the {probe.rotation} degree display rotation of this "
                "file; use the pyav backend"
            )
        self.info = _info(path, probe, "decord")
        self._decord = decord
        self._reader = self._open()
        found = len(self._reader)
        if found < self.info.num_frames:
            raise UserError(
                f"{path}: decord finds {found} frames where PyAV decodes {self.info.num_frames}; "
                "use the pyav backend"
            )
        first = self.get_frame(0)
        # converters round 4:2:0 chroma differently at odd sizes; garbage differs far more
        if np.abs(first.astype(np.int16) - probe.first_frame).mean() > _DECORD_TOLERANCE:
            raise UserError(f"{path}: decord decodes a different first frame; use the pyav backend")
        decoded_bytes = self.info.num_frames * self.info.width * self.info.height * 3
        if decoded_bytes > _DECORD_WARN_BYTES:
            _warn(
                f"{path}: decord decodes ahead without bound and may hold the whole clip "
                f"decoded ({decoded_bytes / 2**30:.1f} GB) while the model works; the auto "
                "backend (PyAV) streams it in constant memory"
            )

    def _open(self):  # -> decord.VideoReader
        try:
            return self._decord.VideoReader(str(self.info.path), num_threads=0)
        except Exception as error:  # decord raises several unrelated types from its C++ core
            reason = _decord_reason(error)
            raise UserError(
                f"{self.info.path}: decord cannot read it ({reason}); use the pyav backend"
            ) from None

    def iter_frames(self, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        count = self.info.num_frames
        if start == count:
            return
        _check_index(start, count)
        reader = self._open()  # its own reader, so that two iterations do not share a position
        reader.seek_accurate(start)
        for index in range(start, count):
            try:
                frame = reader.next().asnumpy()
            except StopIteration:
                raise UserError(
                    f"{self.info.path}: decoding stopped at frame {index} of {count}"
                ) from None
            self._check_shape(frame)
            yield index, frame

    def get_frame(self, index: int) -> np.ndarray:
        _check_index(index, self.info.num_frames)
        frame = self._reader[index].asnumpy()
        self._reader.seek(0)  # stops the read-ahead that would otherwise decode the whole clip
        self._check_shape(frame)
        return frame

    def _check_shape(self, frame: np.ndarray) -> None:
        if frame.shape != (self.info.height, self.info.width, 3):
            raise UserError(
                f"{self.info.path}: decord returned a frame of shape {frame.shape} instead of "
                f"{(self.info.height, self.info.width, 3)}; use the pyav backend"
            )

    def close(self) -> None:
        self._reader = None


class FrameFolder(VideoSource):
    """A folder of .jpg/.png frames, one file per frame, in natural order of their names."""

    def __init__(
        self, folder: Path, fps: float = DEFAULT_FOLDER_FPS, files: list[Path] | None = None
    ) -> None:
        """files: these frames, in this order (a benchmark's list); default: the folder's."""
        if files is None:
            files = sorted(
                (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES),
                key=lambda p: _natural_key(p.name),
            )
        if not files:
            raise UserError(f"{folder}: no {'/'.join(FRAME_SUFFIXES)} frames in this folder")
        seen: dict[str, Path] = {}
        for file in files:
            if file.stem in seen:
                raise UserError(f"{file}: two frames named {file.stem!r} ({seen[file.stem].name})")
            seen[file.stem] = file
        width, height = _displayed_size(files[0])
        for file in files[1:]:
            size = _displayed_size(file)
            if size != (width, height):
                raise UserError(
                    f"{file}: the frame is {size[0]}x{size[1]} but {files[0].name} is "
                    f"{width}x{height}; all frames of a video must have one size"
                )
        self._files = files
        self.info = VideoInfo(
            path=folder,
            num_frames=len(files),
            fps=float(fps),
            width=width,
            height=height,
            rotation=0,
            timestamps=None,
            backend="folder",
            frame_names=tuple(p.stem for p in files),
        )

    def iter_frames(self, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        if start != self.info.num_frames:
            _check_index(start, self.info.num_frames)
        for index in range(start, self.info.num_frames):
            yield index, self.get_frame(index)

    def get_frame(self, index: int) -> np.ndarray:
        _check_index(index, self.info.num_frames)
        return read_image(self._files[index], what="frame")


def read_image(file: Path | str, what: str = "image") -> np.ndarray:
    """An image file, upright (EXIF orientation applied), as (H, W, 3) uint8 RGB."""
    file = Path(file)
    try:
        with Image.open(file) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except FileNotFoundError:
        raise UserError(f"{file}: no such {what} file") from None
    except IsADirectoryError:
        raise UserError(f"{file}: a folder, not an {what} file") from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise UserError(f"{file}: cannot decode the {what} ({error})") from None


def check_rgb(frame: object, what: str) -> np.ndarray:
    """An (H, W, 3) uint8 array, or UserError naming ``what`` and what it is instead."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3:
        described = (
            f"{frame.dtype} {frame.shape}"
            if isinstance(frame, np.ndarray)
            else type(frame).__name__
        )
        raise UserError(f"{what}: expected an (H, W, 3) uint8 RGB array, got {described}")
    if frame.shape[2] != 3:
        raise UserError(f"{what}: expected 3 colour channels (RGB), got {frame.shape[2]}")
    return frame


class FrameArrays(VideoSource):
    """Frames handed over as arrays: a list (or (N, H, W, 3) array) of equal-size RGB frames.

    The Python API's video when it is not a file; named ``name`` in outputs, at ``fps``.
    """

    def __init__(self, frames, name: str = "frames", fps: float = DEFAULT_FOLDER_FPS) -> None:
        if len(frames) == 0:
            raise UserError("the video has no frames")
        first = check_rgb(frames[0], "frame 0")
        for index, frame in enumerate(frames):
            if check_rgb(frame, f"frame {index}").shape != first.shape:
                raise UserError(
                    f"frame {index}: {frame.shape[1]}x{frame.shape[0]} but frame 0 is "
                    f"{first.shape[1]}x{first.shape[0]}; all frames of a video must have one size"
                )
        self._frames = frames
        self.info = VideoInfo(
            path=Path(name),
            num_frames=len(frames),
            fps=float(fps),
            width=first.shape[1],
            height=first.shape[0],
            rotation=0,
            timestamps=None,
            backend="arrays",
            frame_names=_video_frame_names(len(frames)),
        )

    def iter_frames(self, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        for index in range(start, self.info.num_frames):
            yield index, np.ascontiguousarray(self._frames[index])

    def get_frame(self, index: int) -> np.ndarray:
        _check_index(index, self.info.num_frames)
        return np.ascontiguousarray(self._frames[index])


class FrameStream(VideoSource):
    """Frames from any iterator (a generator, a camera), read once, never all held.

    Its length is unknown until the end: ``info.num_frames`` is -1. Each frame is checked to be
    (H, W, 3) uint8 of the first frame's size as it arrives.
    """

    def __init__(self, frames, name: str = "frames", fps: float = DEFAULT_FOLDER_FPS) -> None:
        self._frames = iter(frames)
        try:
            self._first = check_rgb(next(self._frames), "frame 0")
        except StopIteration:
            raise UserError("the video has no frames") from None
        self._used = False
        self.info = VideoInfo(
            path=Path(name),
            num_frames=-1,
            fps=float(fps),
            width=self._first.shape[1],
            height=self._first.shape[0],
            rotation=0,
            timestamps=None,
            backend="stream",
            frame_names=(),
        )

    def iter_frames(self, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        if self._used or start != 0:
            raise UserError("a stream of frames can be read once, from its start")
        self._used = True
        yield 0, self._first
        for index, frame in enumerate(self._frames, start=1):
            if check_rgb(frame, f"frame {index}").shape != self._first.shape:
                raise UserError(
                    f"frame {index}: {frame.shape[1]}x{frame.shape[0]} but frame 0 is "
                    f"{self._first.shape[1]}x{self._first.shape[0]}"
                )
            yield index, frame


def _decord_reason(error: Exception) -> str:
    """decord's message without its "[time] source.cc:line: Error:" prefix."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    return re.sub(r"^\[[^\]]*\]\s*\S+:\d+:\s*(Error:\s*)?", "", lines[-1])[:200]


def _natural_key(name: str) -> list[int | str]:
    """Sort key under which "2.png" comes before "10.png"."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _displayed_size(file: Path) -> tuple[int, int]:
    """(width, height) as shown, after the EXIF orientation; reads the header only."""
    try:
        with Image.open(file) as image:
            width, height = image.size
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except (UnidentifiedImageError, OSError) as error:
        raise UserError(f"{file}: cannot read the frame as an image ({error})") from None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)
