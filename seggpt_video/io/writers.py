"""Output writers: each turns the frames and their object ids, fed in frame order, into one output.

Formats (the names `make_writers` takes), for a video named <seq> and an output folder <out>:

- ``davis``: one DAVIS-palette PNG per frame, ``<out>/<seq>/<frame>.png``.
- ``youtube-vos``: the YouTube-VOS submission layout, ``<out>/Annotations/<seq>/<frame>.png``
  (palette PNGs; the evaluation package zips ``Annotations/`` for the challenge server).
- ``overlay``: ``<out>/<seq>_overlay.mp4``, H.264 yuv420p, each object's palette colour blended over
  the video with its outline drawn; same frame count and timestamps as the source.
- ``matte``: one 0/255 grayscale matte per object, ``<out>/matte/object_<id>/<frame>.png``, and a
  lossless FFV1 video per object, ``<out>/matte/object_<id>.mkv`` (gray).
- ``prores``: ``<out>/matte/object_<id>.mov``, ProRes 4444 with the video as RGB and the object's
  matte as alpha, for editing software.
- ``y4m``: the mattes as a YUV4MPEG2 gray video, to a pipe (output "-") or ``<out>/<seq>.y4m``.
- ``summary``: ``<out>/summary.json``: the video, its objects, their area per frame, timings.

Mattes (``matte``, ``prores``, ``y4m``) are 0/255 from the object ids, or soft (0-255) when the
frames carry soft mattes (``alpha``, see ``engine.SegmentedFrame``); the other outputs always show
the hard ids.

<frame> is the video's frame name: 00000, 00001, ... for a video file, the frame file's name for a
folder of frames (YouTube-VOS frames are named by their 5-digit frame number).

Resuming: PNG outputs write each frame's file atomically, so a frame whose files exist is `done` and
a re-run may skip it. Video outputs cannot be resumed mid-stream: they are encoded into a hidden
temporary file in the same folder that replaces the final name only in close(); a re-run rewrites
them, and the previous complete file stays in place until the new one is complete. Leaving a
``with writer:`` block by an exception (Ctrl-C included) discards the unfinished video.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from contextlib import suppress
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
from PIL import Image

from seggpt_video.errors import UserError
from seggpt_video.io.atomic import PendingFile, atomic_path, remove_partials, remove_partials_in
from seggpt_video.io.masks import DAVIS_PALETTE, write_palette_png
from seggpt_video.io.video import VideoInfo

FORMATS = ("davis", "youtube-vos", "overlay", "matte", "prores", "y4m", "summary")
OVERLAY_ALPHA = 0.5
_TIME_BASE = Fraction(1, 90000)  # fine enough for any frame timestamp


class Writer:
    """One output of a run: write() every frame in order, then close(); abort() on failure."""

    info: VideoInfo

    def write(
        self, index: int, frame: np.ndarray, labels: np.ndarray, alpha: np.ndarray | None = None
    ) -> None:
        """Add frame `index`.

        frame: (H, W, 3) uint8 RGB as read from the video; labels: (H, W) uint8 object ids;
        alpha: soft mattes (1 + K, H, W) uint8, channel 0 the union of the objects and channel k
        the k-th of the clip's objects in increasing id order, or None (mattes from labels).
        """
        raise NotImplementedError

    def done(self, index: int) -> bool:
        """Whether frame `index` is already in the output (from this run or an earlier one)."""
        return False

    def completed_frames(self) -> set[int]:
        """The indices of the frames already in the output."""
        return {index for index in range(self.info.num_frames) if self.done(index)}

    def read(self, index: int) -> np.ndarray | None:
        """Frame `index`'s object ids as written, (H, W) uint8; None when this output cannot
        give them back (videos, mattes, summaries)."""
        return None

    def record_timings(self, seconds: dict[str, float]) -> None:
        """Offered the run's timings before close(); only outputs that report them keep them."""

    def close(self) -> None:
        """Finish the output and move it under its final name."""

    def abort(self) -> None:
        """Drop the unfinished part of the output; completed files stay."""

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _check_labels(self, labels: np.ndarray) -> None:
        expected = (self.info.height, self.info.width)
        if labels.shape != expected or labels.dtype != np.uint8:
            raise ValueError(f"labels must be uint8 {expected}, got {labels.dtype} {labels.shape}")


def _seconds(info: VideoInfo, index: int) -> float:
    """Presentation time of frame `index`: the source's own timestamps when it has them."""
    return info.timestamps[index] if info.timestamps is not None else index / info.fps


def _rate(fps: float) -> Fraction:
    """A frame rate as the fraction video headers use, e.g. 29.97 -> 30000/1001."""
    return Fraction(fps).limit_denominator(1001)


# --- PNG sequences (resumable) ------------------------------------------------------------------


class PalettePNGWriter(Writer):
    """One DAVIS-palette PNG of object ids per frame: <folder>/<frame name>.png."""

    def __init__(self, folder: Path | str, info: VideoInfo) -> None:
        self.folder = Path(folder)
        self.info = info
        self.folder.mkdir(parents=True, exist_ok=True)
        remove_partials_in(self.folder)

    def frame_path(self, index: int) -> Path:
        """Where frame `index` is written."""
        return self.folder / f"{self.info.frame_names[index]}.png"

    def write(
        self, index: int, frame: np.ndarray, labels: np.ndarray, alpha: np.ndarray | None = None
    ) -> None:
        self._check_labels(labels)
        write_palette_png(self.frame_path(index), labels)

    def done(self, index: int) -> bool:
        return self.frame_path(index).is_file()

    def read(self, index: int) -> np.ndarray | None:
        path = self.frame_path(index)
        try:
            with Image.open(path) as image:
                labels = np.array(image, dtype=np.uint8)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise UserError(f"{path}: cannot read back this mask ({error})") from None
        if labels.shape != (self.info.height, self.info.width):
            raise UserError(
                f"{path}: {labels.shape[1]}x{labels.shape[0]}, not the video's "
                f"{self.info.width}x{self.info.height}"
            )
        return labels


class MattePNGWriter(Writer):
    """One grayscale PNG per object and frame: <folder>/object_<id>/<frame name>.png (0/255, or
    the soft matte 0-255 when frames carry one)."""

    def __init__(self, folder: Path | str, info: VideoInfo, object_ids: Iterable[int]) -> None:
        self.folder = Path(folder)
        self.info = info
        self.object_ids = list(object_ids)
        for object_id in self.object_ids:
            (self.folder / f"object_{object_id}").mkdir(parents=True, exist_ok=True)
            remove_partials_in(self.folder / f"object_{object_id}")

    def frame_path(self, index: int, object_id: int) -> Path:
        """Where the matte of `object_id` in frame `index` is written."""
        return self.folder / f"object_{object_id}" / f"{self.info.frame_names[index]}.png"

    def write(
        self, index: int, frame: np.ndarray, labels: np.ndarray, alpha: np.ndarray | None = None
    ) -> None:
        self._check_labels(labels)
        for object_id in self.object_ids:
            matte = Image.fromarray(_matte(labels, object_id, alpha, self.object_ids))
            with atomic_path(self.frame_path(index, object_id)) as partial:
                matte.save(partial, format="PNG")

    def done(self, index: int) -> bool:
        return all(self.frame_path(index, i).is_file() for i in self.object_ids)


def _matte(
    labels: np.ndarray,
    object_id: int | None,
    alpha: np.ndarray | None = None,
    object_ids: Iterable[int] | None = None,
) -> np.ndarray:
    """(H, W) uint8 matte of the object (of any object when object_id is None): 255 inside and
    0 outside from labels, or its channel of the soft mattes `alpha` (1 + K, H, W), whose
    channels follow the K ids of `object_ids` in increasing order."""
    if alpha is not None:
        order = sorted(object_ids or [])
        if alpha.shape != (1 + len(order), *labels.shape) or alpha.dtype != np.uint8:
            raise ValueError(
                f"alpha must be uint8 {(1 + len(order), *labels.shape)}, "
                f"got {alpha.dtype} {alpha.shape}"
            )
        return alpha[0 if object_id is None else 1 + order.index(object_id)]
    inside = labels != 0 if object_id is None else labels == object_id
    return inside.astype(np.uint8) * 255


# --- encoded videos (rewritten on every run) ----------------------------------------------------


class _EncodedVideo:
    """One video file encoded under a hidden temporary name; finish() moves it onto `path`."""

    def __init__(
        self,
        path: Path,
        info: VideoInfo,
        codec: str,
        pix_fmt: str,
        container_format: str,
        options: dict[str, str] | None = None,
        container_options: dict[str, str] | None = None,
        size: tuple[int, int] | None = None,
    ) -> None:
        self.path = path
        self.info = info
        remove_partials(path)
        self._file = PendingFile(path)
        self._container = av.open(
            str(self._file.partial), "w", format=container_format, options=container_options or {}
        )
        self._stream = self._container.add_stream(codec, rate=_rate(info.fps))
        self._stream.width, self._stream.height = size or (info.width, info.height)
        self._stream.pix_fmt = pix_fmt
        self._stream.codec_context.time_base = _TIME_BASE
        self._stream.options = options or {}
        self.frames = 0

    def add(self, image: np.ndarray, pixel_format: str, index: int) -> None:
        """Encode frame `index`; image: (H, W) or (H, W, C) uint8 in `pixel_format` (e.g. rgb24)."""
        frame = av.VideoFrame.from_ndarray(image, format=pixel_format)
        frame.pts = round(_seconds(self.info, index) / _TIME_BASE)
        frame.time_base = _TIME_BASE
        self._mux(self._stream.encode(frame))
        self.frames += 1

    def finish(self) -> None:
        """Flush the encoder, close the file and move it onto the final name."""
        if self.frames == 0:  # nothing was written: keep whatever file was there
            self.discard()
            return
        try:
            self._mux(self._stream.encode())
            self._container.close()
        except BaseException:
            self.discard()
            raise
        self._file.commit()

    def discard(self) -> None:
        """Close and delete the temporary file; the final name is left untouched."""
        with suppress(av.FFmpegError, OSError):
            self._container.close()
        self._file.discard()

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            self._container.mux(packet)


class _VideoWriter(Writer):
    """Base of the writers that encode videos: frames must arrive in order from frame 0."""

    def __init__(self, info: VideoInfo) -> None:
        self.info = info
        self._videos: list[_EncodedVideo] = []
        self._next = 0

    def _take(self, index: int, labels: np.ndarray) -> None:
        self._check_labels(labels)
        if index != self._next:
            raise ValueError(f"video outputs need every frame in order: expected {self._next}")
        self._next += 1

    def close(self) -> None:
        try:
            for video in self._videos:
                video.finish()
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        for video in self._videos:
            video.discard()


class OverlayWriter(_VideoWriter):
    """An H.264 mp4 of the video with each object's colour and outline drawn over it.

    x264 needs even sizes for yuv420p: an odd width or height gets its last column or row
    repeated once, so the overlay stays pixel-aligned with the source (63x47 -> 64x48).
    """

    def __init__(self, path: Path | str, info: VideoInfo, alpha: float = OVERLAY_ALPHA) -> None:
        super().__init__(info)
        self.path = Path(path)
        self.alpha = alpha
        self._pad = (info.height % 2, info.width % 2)
        size = (info.width + self._pad[1], info.height + self._pad[0])
        self._videos = [
            _EncodedVideo(
                self.path,
                info,
                "libx264",
                "yuv420p",
                "mp4",
                options={"crf": "18", "preset": "veryfast"},
                container_options={"movflags": "+faststart"},
                size=size,
            )
        ]

    def write(
        self, index: int, frame: np.ndarray, labels: np.ndarray, alpha: np.ndarray | None = None
    ) -> None:
        self._take(index, labels)
        image = draw_overlay(frame, labels, self.alpha)
        if any(self._pad):
            image = np.pad(image, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        self._videos[0].add(image, "rgb24", index)


class MatteVideoWriter(_VideoWriter):
    """One video per object: FFV1 gray mattes (.mkv, lossless) or ProRes 4444 RGB+alpha (.mov).

    ProRes stores the alpha (the matte) losslessly; its RGB is ProRes's near-lossless coding.
    """

    CODECS = ("ffv1", "prores")

    def __init__(
        self, folder: Path | str, info: VideoInfo, object_ids: Iterable[int], codec: str = "ffv1"
    ) -> None:
        super().__init__(info)
        if codec not in self.CODECS:
            raise ValueError(f"codec must be one of {self.CODECS}, got {codec!r}")
        self.folder = Path(folder)
        self.object_ids = list(object_ids)
        self.codec = codec
        self._videos = []
        try:
            for object_id in self.object_ids:
                self._videos.append(self._open(self.video_path(object_id)))
        except BaseException:
            self.abort()
            raise

    def video_path(self, object_id: int) -> Path:
        """The video file of one object."""
        suffix = ".mkv" if self.codec == "ffv1" else ".mov"
        return self.folder / f"object_{object_id}{suffix}"

    def _open(self, path: Path) -> _EncodedVideo:
        if self.codec == "ffv1":
            # bitexact: no random segment id, so the same mattes give the same file
            return _EncodedVideo(
                path,
                self.info,
                "ffv1",
                "gray",
                "matroska",
                container_options={"fflags": "+bitexact"},
            )
        return _EncodedVideo(
            path, self.info, "prores_ks", "yuva444p10le", "mov", options={"profile": "4444"}
        )

    def write(
        self, index: int, frame: np.ndarray, labels: np.ndarray, alpha: np.ndarray | None = None
    ) -> None:
        self._take(index, labels)
        for object_id, video in zip(self.object_ids, self._videos, strict=True):
            matte = _matte(labels, object_id, alpha, self.object_ids)
            if self.codec == "ffv1":
                video.add(matte, "gray", index)
            else:
                video.add(np.dstack([frame, matte]), "rgba", index)


def draw_overlay(
    frame: np.ndarray, labels: np.ndarray, alpha: float = OVERLAY_ALPHA, outline: int | None = None
) -> np.ndarray:
    """The frame with each object's palette colour blended in and its outline drawn opaque.

    frame: (H, W, 3) uint8 RGB; labels: (H, W) uint8 object ids; alpha: colour weight inside
    objects; outline: width in pixels (default: 1 per 240 pixels of the shorter side, at least 1).
    Returns (H, W, 3) uint8 RGB.
    """
    if outline is None:
        outline = max(1, round(min(labels.shape) / 240))
    colours = DAVIS_PALETTE[labels]
    inside = labels != 0
    image = frame.copy()
    blend = frame[inside] * (1.0 - alpha) + colours[inside] * alpha
    image[inside] = np.rint(blend).astype(np.uint8)
    edge = _object_edges(labels, outline)
    image[edge] = colours[edge]
    return image


def _object_edges(labels: np.ndarray, width: int) -> np.ndarray:
    """(H, W) bool: object pixels within `width` pixels of a pixel with another id."""
    edge = np.zeros(labels.shape, dtype=bool)
    vertical = labels[1:] != labels[:-1]
    horizontal = labels[:, 1:] != labels[:, :-1]
    edge[1:] |= vertical
    edge[:-1] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    for _ in range(width - 1):
        grown = edge.copy()
        grown[1:] |= edge[:-1]
        grown[:-1] |= edge[1:]
        grown[:, 1:] |= edge[:, :-1]
        grown[:, :-1] |= edge[:, 1:]
        edge = grown
    return edge & (labels != 0)


# --- a Y4M stream for pipes ---------------------------------------------------------------------


class Y4MWriter(Writer):
    """The mattes as YUV4MPEG2 (8-bit gray, ``Cmono``), e.g. ``... | ffmpeg -i - out.mkv``.

    Each frame is 255 inside `object_id` or, when it is None, inside any object: a pipe carries
    a single video, so several objects are merged into their union (use the ``matte`` format for a
    video per object); with soft mattes, that object's (or the union's) soft matte. The header's
    frame rate is info.fps; Y4M cannot carry variable frame timing. target: a binary stream
    (e.g. sys.stdout.buffer; flushed, not closed) or a file path (written under a temporary name
    and moved into place by close()). object_ids: the clip's objects (the soft mattes' order).
    """

    def __init__(
        self,
        target: BinaryIO | Path | str,
        info: VideoInfo,
        object_id: int | None = None,
        object_ids: Iterable[int] = (),
    ) -> None:
        self.info = info
        self.object_id = object_id
        self.object_ids = list(object_ids)
        self._next = 0
        if isinstance(target, (str, Path)):
            self.path: Path | None = Path(target)
            remove_partials(self.path)
            self._file: PendingFile | None = PendingFile(self.path)
            self._stream: BinaryIO = open(self._file.partial, "wb")  # closed by close()/abort()
        else:
            self.path = None
            self._file = None
            self._stream = target
        rate = _rate(info.fps)
        header = f"YUV4MPEG2 W{info.width} H{info.height} F{rate.numerator}:{rate.denominator}"
        self._emit(f"{header} Ip A1:1 Cmono\n".encode("ascii"))

    def write(
        self, index: int, frame: np.ndarray, labels: np.ndarray, alpha: np.ndarray | None = None
    ) -> None:
        self._check_labels(labels)
        if index != self._next:
            raise ValueError(f"a Y4M stream needs every frame in order: expected {self._next}")
        matte = _matte(labels, self.object_id, alpha, self.object_ids)
        self._emit(b"FRAME\n" + np.ascontiguousarray(matte).tobytes())
        self._next += 1

    def close(self) -> None:
        self._flush()
        if self._file is not None:
            self._stream.close()
            self._file.commit()

    def abort(self) -> None:
        if self._file is not None:
            self._stream.close()
            self._file.discard()
        else:
            with suppress(OSError):
                self._stream.flush()

    def _emit(self, data: bytes) -> None:
        try:
            self._stream.write(data)
            if self.path is None:  # hand each frame to the reading program as soon as it is made
                self._stream.flush()
        except BrokenPipeError:
            raise UserError(f"{self._name}: the program reading the output closed it") from None

    def _flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise UserError(f"{self._name}: the program reading the output closed it") from None

    @property
    def _name(self) -> str:
        return str(self.path) if self.path is not None else "-"


# --- summary.json -------------------------------------------------------------------------------


class SummaryWriter(Writer):
    """summary.json: the video, its objects, each object's area in pixels per frame, timings.

    The run's timings (name -> seconds) arrive by record_timings() before close(). A re-run into
    the same folder keeps the areas an earlier run of the same video and objects recorded, so a
    resumed run's summary is complete.
    """

    def __init__(self, path: Path | str, info: VideoInfo, object_ids: Iterable[int]) -> None:
        self.path = Path(path)
        self.info = info
        self.object_ids = list(object_ids)
        self.timings: dict[str, float] = {}
        self._areas: dict[int, list[int]] = self._earlier_areas()

    def record_timings(self, seconds: dict[str, float]) -> None:
        self.timings = dict(seconds)

    def write(
        self, index: int, frame: np.ndarray, labels: np.ndarray, alpha: np.ndarray | None = None
    ) -> None:
        self._check_labels(labels)
        counts = np.bincount(labels.ravel(), minlength=256)
        self._areas[index] = [int(counts[i]) for i in self.object_ids]

    def done(self, index: int) -> bool:
        return index in self._areas

    def close(self) -> None:
        area = {
            str(object_id): [
                self._areas[i][slot] if i in self._areas else None
                for i in range(self.info.num_frames)
            ]
            for slot, object_id in enumerate(self.object_ids)
        }
        summary = {
            "video": str(self.info.path),
            "backend": self.info.backend,
            "width": self.info.width,
            "height": self.info.height,
            "fps": self.info.fps,
            "num_frames": self.info.num_frames,
            "frames_done": len(self._areas),
            "frame_names": list(self.info.frame_names),
            "objects": self.object_ids,
            "area_pixels": area,
            "timings_seconds": self.timings,
        }
        with atomic_path(self.path) as partial:
            partial.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")

    def _earlier_areas(self) -> dict[int, list[int]]:
        try:
            earlier = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        same_run = (
            isinstance(earlier, dict)
            and earlier.get("video") == str(self.info.path)
            and earlier.get("num_frames") == self.info.num_frames
            and earlier.get("objects") == self.object_ids
        )
        if not same_run:
            return {}
        columns = [earlier["area_pixels"][str(i)] for i in self.object_ids]
        return {
            index: [column[index] for column in columns]
            for index in range(self.info.num_frames)
            if all(column[index] is not None for column in columns)
        }


# --- assembling the outputs of a run ------------------------------------------------------------


def check_formats(formats: Iterable[str]) -> None:
    """UserError naming the first format that is not one of FORMATS (checked before any work)."""
    unknown = [name for name in formats if name not in FORMATS]
    if unknown:
        raise UserError(f"unknown output format {unknown[0]!r} (choose from {', '.join(FORMATS)})")


def make_writers(
    formats: Iterable[str],
    output: Path | str,
    info: VideoInfo,
    object_ids: Iterable[int],
    *,
    sequence: str | None = None,
    y4m_object: int | None = None,
) -> list[Writer]:
    """The writers for `formats` (see FORMATS), writing into the folder `output`.

    output "-" streams the ``y4m`` format to stdout (the only format that can). sequence: the
    video's name in output paths (default: info.name). y4m_object: the object the Y4M stream
    carries (default: all objects merged).
    """
    formats = list(dict.fromkeys(formats))
    check_formats(formats)
    object_ids = list(object_ids)
    if str(output) == "-":
        if formats != ["y4m"]:
            others = ", ".join(name for name in formats if name != "y4m")
            raise UserError(f"-: only the y4m format can be streamed to stdout, not {others}")
        return [Y4MWriter(sys.stdout.buffer, info, y4m_object, object_ids)]

    out = Path(output)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    sequence = sequence or info.name
    writers: list[Writer] = []
    try:
        for name in formats:
            if name == "davis":
                writers.append(PalettePNGWriter(out / sequence, info))
            elif name == "youtube-vos":
                writers.append(PalettePNGWriter(out / "Annotations" / sequence, info))
            elif name == "overlay":
                writers.append(OverlayWriter(out / f"{sequence}_overlay.mp4", info))
            elif name == "matte":
                writers.append(MattePNGWriter(out / "matte", info, object_ids))
                writers.append(MatteVideoWriter(out / "matte", info, object_ids, "ffv1"))
            elif name == "prores":
                writers.append(MatteVideoWriter(out / "matte", info, object_ids, "prores"))
            elif name == "y4m":
                writers.append(Y4MWriter(out / f"{sequence}.y4m", info, y4m_object, object_ids))
            elif name == "summary":
                writers.append(SummaryWriter(out / "summary.json", info, object_ids))
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    return writers
