"""Small synthetic videos, frame folders and masks for tests (no downloads, no /work/shared).

Typical use::

    frames, labels = moving_shapes(num_frames=12, height=48, width=64, num_objects=2, seed=0)
    video = make_video(tmp_path / "clip.mp4", frames, fps=25)
    folder = make_frame_folder(tmp_path / "clip", frames, ext="png")

Frames are (T, H, W, 3) uint8 RGB; labels are (T, H, W) uint8 object ids (0 = background).
The scenes are smooth gradients with flat-coloured shapes, so lossy codecs keep them close to the
source (mean absolute error of a few grey levels at the default quality).

Import this module (or PyAV) before decord: with decord's bundled FFmpeg loaded first, PyAV's
libvpx-vp9 encoder fails to open (seen with decord 0.6 and PyAV 18), so .webm files cannot be made.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import imageio_ffmpeg
import numpy as np
from PIL import Image

OBJECT_COLOURS = np.array(
    [(230, 40, 40), (40, 200, 60), (50, 80, 230), (235, 200, 40), (200, 60, 200), (40, 210, 210)],
    dtype=np.uint8,
)

# codec per container, chosen as a typical file of that kind would be
DEFAULT_CODECS = {
    ".mp4": "libx264",
    ".mov": "libx264",
    ".mkv": "libx264",
    ".webm": "libvpx-vp9",
    ".avi": "mpeg4",
}
_CODEC_OPTIONS = {
    "libx264": {"crf": "8", "preset": "veryfast"},  # B-frames on, as in real files
    "libvpx-vp9": {"crf": "4", "b": "0", "deadline": "realtime", "cpu-used": "8"},
}
_BIT_RATES = {"mpeg4": 4_000_000}  # mpeg4 is rate-controlled: its default 200 kb/s is blurry


def moving_shapes(
    num_frames: int = 12, height: int = 48, width: int = 64, num_objects: int = 2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Flat-coloured ellipses and rectangles moving (and bouncing) over a gradient.

    Returns frames (T, H, W, 3) uint8 RGB and labels (T, H, W) uint8: object k (1-based) is
    OBJECT_COLOURS[k - 1]; later objects cover earlier ones.
    """
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    background = np.stack(
        [
            40 + 120 * xs / max(width - 1, 1),
            40 + 120 * ys / max(height - 1, 1),
            np.full((height, width), 90.0),
        ],
        axis=-1,
    )
    half_sizes = [
        (
            max(2, int(rng.integers(height // 8, height // 4 + 1))),
            max(2, int(rng.integers(width // 8, width // 4 + 1))),
        )
        for _ in range(num_objects)
    ]
    centres = [
        np.array([rng.uniform(hh, height - hh), rng.uniform(hw, width - hw)])
        for hh, hw in half_sizes
    ]
    velocities = [rng.uniform(1.0, 3.0, size=2) * rng.choice([-1, 1], size=2) for _ in half_sizes]

    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    labels = np.zeros((num_frames, height, width), dtype=np.uint8)
    for t in range(num_frames):
        image = background.copy()
        for k, ((hh, hw), centre, velocity) in enumerate(
            zip(half_sizes, centres, velocities, strict=True)
        ):
            cy, cx = centre
            if k % 2 == 0:
                inside = ((ys - cy) / hh) ** 2 + ((xs - cx) / hw) ** 2 <= 1.0
            else:
                inside = (np.abs(ys - cy) <= hh) & (np.abs(xs - cx) <= hw)
            image[inside] = OBJECT_COLOURS[k % len(OBJECT_COLOURS)]
            labels[t][inside] = k + 1
            centre += velocity
            for axis, (limit, half) in enumerate(((height, hh), (width, hw))):
                if not half <= centre[axis] <= limit - half:
                    velocity[axis] = -velocity[axis]
                    centre[axis] = np.clip(centre[axis], half, limit - half)
        frames[t] = np.rint(image).astype(np.uint8)
    return frames, labels


def make_video(
    path: Path | str,
    frames: np.ndarray,
    fps: float = 25.0,
    codec: str | None = None,
    pix_fmt: str | None = None,
    timestamps: Sequence[float] | None = None,
    rotation: int = 0,
    gop: int = 6,
) -> Path:
    """Encode frames (T, H, W, 3) uint8 RGB into a video file with PyAV.

    codec: default by extension (DEFAULT_CODECS). pix_fmt: default yuv420p, or yuv444p for x264
    at odd sizes (x264 refuses odd 4:2:0). timestamps: seconds per frame for a variable frame rate.
    rotation: display-matrix rotation in degrees counter-clockwise (the pixels are stored as
    given; a player shows them turned). gop: frames per keyframe interval, so seeking is real.
    """
    path = Path(path)
    codec = codec or DEFAULT_CODECS[path.suffix.lower()]
    _, height, width, _ = frames.shape
    odd = height % 2 or width % 2
    pix_fmt = pix_fmt or ("yuv444p" if odd and codec == "libx264" else "yuv420p")
    time_base = Fraction(1, 1000) if timestamps is not None else None
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.gop_size = gop
        stream.options = dict(_CODEC_OPTIONS.get(codec, {}))
        if codec in _BIT_RATES:
            stream.bit_rate = _BIT_RATES[codec]
        if time_base is not None:
            stream.codec_context.time_base = time_base
        if rotation:
            stream.set_display_rotation(rotation)
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if time_base is not None:
                frame.pts = round(timestamps[index] / time_base)
                frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_frame_folder(
    folder: Path | str,
    frames: np.ndarray,
    ext: str = "png",
    names: Sequence[str] | None = None,
) -> Path:
    """Write frames (T, H, W, 3) uint8 RGB as <folder>/<name>.<ext> (names default 00000, ...)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = names if names is not None else [f"{i:05d}" for i in range(len(frames))]
    for name, image in zip(names, frames, strict=True):
        options = {"quality": 95} if ext.lower() in ("jpg", "jpeg") else {}
        Image.fromarray(image).save(folder / f"{name}.{ext}", **options)
    return folder


def cut_file(path: Path | str, fraction: float = 0.5, out: Path | str | None = None) -> Path:
    """A copy of the file cut after `fraction` of its bytes, like an interrupted download."""
    path = Path(path)
    out = Path(out) if out is not None else path.with_name(f"cut_{path.name}")
    data = path.read_bytes()
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def ffmpeg_frames(path: Path | str, width: int, height: int, pix_fmt: str = "rgb24") -> np.ndarray:
    """Decode a video with the ffmpeg program (independent of PyAV; applies rotation like players).

    width, height: the displayed size. Returns (T, H, W, 3) uint8 for rgb24, (T, H, W) for gray.
    """
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path)]
    command += ["-f", "rawvideo", "-pix_fmt", pix_fmt, "-"]
    raw = subprocess.run(command, capture_output=True, check=True).stdout
    channels = 3 if pix_fmt == "rgb24" else 1
    shape = (-1, height, width, channels) if channels > 1 else (-1, height, width)
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape)
