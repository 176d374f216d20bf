"""Output writers: every format read back, Y4M through real ffmpeg, resume, atomic outputs."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from contextlib import suppress
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image
from synthetic_media import cut_file, make_video, moving_shapes

from seggpt_video.errors import UserError
from seggpt_video.io.masks import DAVIS_PALETTE, read_mask
from seggpt_video.io.video import VideoInfo, VideoWarning, open_video
from seggpt_video.io.writers import (
    MattePNGWriter,
    MatteVideoWriter,
    OverlayWriter,
    PalettePNGWriter,
    SummaryWriter,
    Y4MWriter,
    draw_overlay,
    make_writers,
)

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray]:
    frames, labels = moving_shapes(num_frames=10, height=48, width=64, num_objects=2, seed=2)
    assert (labels == 1).any() and (labels == 2).any()
    return frames, labels


def video_info(
    frames: np.ndarray,
    fps: float = 25.0,
    timestamps: list[float] | None = None,
    names: list[str] | None = None,
) -> VideoInfo:
    count, height, width, _ = frames.shape
    return VideoInfo(
        path=Path("/videos/clip.mp4"),
        num_frames=count,
        fps=fps,
        width=width,
        height=height,
        rotation=0,
        timestamps=tuple(timestamps) if timestamps is not None else None,
        backend="pyav",
        frame_names=tuple(names or [f"{i:05d}" for i in range(count)]),
    )


def write_all(writers, frames, labels, indices=None) -> None:
    for index in indices if indices is not None else range(len(frames)):
        for writer in writers:
            writer.write(index, frames[index], labels[index])


class StreamFacts(NamedTuple):
    """What a test asks of a decoded stream, read while its container is open (PyAV 18.1.1
    refuses a closed container's stream)."""

    codec: str
    pix_fmt: str
    average_rate: Fraction | None


def decode(path: Path, pixel_format: str) -> tuple[np.ndarray, list[float], StreamFacts]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded = [(f.to_ndarray(format=pixel_format), f.time) for f in container.decode(stream)]
        facts = StreamFacts(
            stream.codec_context.name, stream.codec_context.pix_fmt, stream.average_rate
        )
    images, times = zip(*decoded, strict=True)
    return np.stack(images), list(times), facts


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- PNG layouts ----------------------------------------------------------------------------------


def test_davis_layout_reads_back_exactly(tmp_path, scene):
    frames, labels = scene
    [writer] = make_writers(["davis"], tmp_path, video_info(frames), [1, 2])
    with writer:
        write_all([writer], frames, labels)
    assert files_in(tmp_path / "clip") == [f"{i:05d}.png" for i in range(10)]
    for index in range(10):
        path = tmp_path / "clip" / f"{index:05d}.png"
        with Image.open(path) as image:
            assert image.mode == "P"
            assert image.getpalette()[:9] == DAVIS_PALETTE[:3].ravel().tolist()
        assert np.array_equal(read_mask(path), labels[index])


def test_youtube_vos_layout_uses_the_frame_names(tmp_path, scene):
    frames, labels = scene
    names = [f"{5 * i:05d}" for i in range(10)]  # YouTube-VOS valid frames: every 5th frame
    [writer] = make_writers(["youtube-vos"], tmp_path, video_info(frames, names=names), [1, 2])
    with writer:
        write_all([writer], frames, labels)
    folder = tmp_path / "Annotations" / "clip"
    assert files_in(folder) == [f"{name}.png" for name in names]
    assert np.array_equal(read_mask(folder / "00045.png"), labels[9])


def test_png_outputs_resume_where_a_run_stopped(tmp_path, scene):
    frames, labels = scene
    info = video_info(frames)
    first = [
        PalettePNGWriter(tmp_path / "clip", info),
        MattePNGWriter(tmp_path / "m", info, [1, 2]),
    ]
    write_all(first, frames, labels, indices=range(4))  # then the run dies (no close)
    (tmp_path / "clip" / ".00004.png.dead1234.partial").write_bytes(b"half a png")

    again = [
        PalettePNGWriter(tmp_path / "clip", info),
        MattePNGWriter(tmp_path / "m", info, [1, 2]),
    ]
    for writer in again:
        assert writer.completed_frames() == {0, 1, 2, 3}
        assert writer.done(3) and not writer.done(4)
    assert files_in(tmp_path / "clip") == [f"{i:05d}.png" for i in range(4)]  # leftover removed
    (tmp_path / "m" / "object_2" / "00003.png").unlink()  # one object's matte missing
    assert not again[1].done(3) and again[0].done(3)


# --- overlay ------------------------------------------------------------------------------------


def test_draw_overlay_blends_colours_and_draws_outlines():
    frame = np.full((480, 640, 3), 100, dtype=np.uint8)
    labels = np.zeros((480, 640), dtype=np.uint8)
    labels[100:200, 100:300] = 1
    labels[300:400, 400:500] = 2
    image = draw_overlay(frame, labels, alpha=0.5)
    assert np.array_equal(image[0:90], frame[0:90])  # background untouched
    assert tuple(image[150, 200]) == (114, 50, 50)  # (100 + 128) / 2, (100 + 0) / 2
    assert tuple(image[350, 450]) == (50, 114, 50)
    # a 2-pixel outline (480 / 240) inside each object, opaque in its palette colour
    for row, col in [(100, 200), (101, 200), (199, 200), (150, 100), (150, 299)]:
        assert tuple(image[row, col]) == (128, 0, 0)
    assert tuple(image[102, 200]) == (114, 50, 50)
    assert tuple(image[99, 200]) == (100, 100, 100)
    assert np.array_equal(draw_overlay(frame, np.zeros_like(labels)), frame)


def test_overlay_video_has_the_source_frames_rate_and_size(tmp_path, scene):
    frames, labels = scene
    [writer] = make_writers(["overlay"], tmp_path, video_info(frames), [1, 2])
    with writer:
        write_all([writer], frames, labels)
    assert files_in(tmp_path) == ["clip_overlay.mp4"]
    decoded, times, stream = decode(tmp_path / "clip_overlay.mp4", "rgb24")
    assert stream.codec == "h264" and stream.pix_fmt == "yuv420p"
    assert decoded.shape == frames.shape
    assert stream.average_rate == 25
    assert times == pytest.approx([i / 25 for i in range(10)], abs=1e-4)
    expected = np.stack([draw_overlay(f, lab) for f, lab in zip(frames, labels, strict=True)])
    errors = np.abs(decoded[:, None].astype(int) - expected[None]).mean(axis=(2, 3, 4))
    assert list(errors.argmin(axis=1)) == list(range(10))
    assert errors.diagonal().max() < 6.0


def test_overlay_pads_odd_sizes_and_keeps_variable_timestamps(tmp_path):
    frames, labels = moving_shapes(num_frames=8, height=47, width=63, num_objects=2, seed=6)
    times = [0.0, 0.05, 0.07, 0.2, 0.45, 0.5, 0.9, 1.0]
    writer = OverlayWriter(tmp_path / "odd.mp4", video_info(frames, fps=7.0, timestamps=times))
    with writer:
        write_all([writer], frames, labels)
    decoded, decoded_times, _ = decode(tmp_path / "odd.mp4", "rgb24")
    assert decoded.shape == (8, 48, 64, 3)  # one repeated row and column
    assert decoded_times == pytest.approx(times, abs=1e-4)
    expected = np.stack([draw_overlay(f, lab) for f, lab in zip(frames, labels, strict=True)])
    assert np.abs(decoded[:, :47, :63].astype(int) - expected).mean() < 6.0


# --- mattes -------------------------------------------------------------------------------------


def test_matte_pngs_and_ffv1_videos_are_exact(tmp_path, scene):
    frames, labels = scene
    times = [i * 1001 / 30000 for i in range(10)]
    info = video_info(frames, fps=30000 / 1001, timestamps=times)
    writers = make_writers(["matte"], tmp_path, info, [1, 2])
    assert [type(w) for w in writers] == [MattePNGWriter, MatteVideoWriter]
    for writer in writers:
        with writer:
            write_all([writer], frames, labels)
    assert files_in(tmp_path / "matte") == ["object_1", "object_1.mkv", "object_2", "object_2.mkv"]
    for object_id in (1, 2):
        mattes = (labels == object_id).astype(np.uint8) * 255
        for index in range(10):
            path = tmp_path / "matte" / f"object_{object_id}" / f"{index:05d}.png"
            with Image.open(path) as image:
                assert image.mode == "L"
                assert np.array_equal(np.asarray(image), mattes[index])
        decoded, decoded_times, stream = decode(
            tmp_path / "matte" / f"object_{object_id}.mkv", "gray"
        )
        assert stream.codec == "ffv1"
        assert np.array_equal(decoded, mattes)  # lossless, frame for frame
        assert decoded_times == pytest.approx(times, abs=1e-3)


def test_prores_4444_carries_the_matte_as_exact_alpha(tmp_path, scene):
    frames, labels = scene
    [writer] = make_writers(["prores"], tmp_path, video_info(frames), [1, 2])
    with writer:
        write_all([writer], frames, labels)
    for object_id in (1, 2):
        decoded, _, stream = decode(tmp_path / "matte" / f"object_{object_id}.mov", "rgba")
        assert stream.codec == "prores"
        assert stream.pix_fmt.startswith("yuva444p")
        assert decoded.shape == (10, 48, 64, 4)
        assert np.array_equal(decoded[..., 3], (labels == object_id).astype(np.uint8) * 255)
        assert np.abs(decoded[..., :3].astype(int) - frames).mean() < 2.0


# --- atomic video outputs -----------------------------------------------------------------------


@pytest.mark.parametrize("format_name", ["overlay", "matte", "prores", "y4m"])
def test_interrupted_video_output_leaves_no_partial_file(tmp_path, scene, format_name):
    frames, labels = scene
    info = video_info(frames)
    finals = {
        "overlay": ["clip_overlay.mp4"],
        "matte": ["matte/object_1.mkv", "matte/object_2.mkv"],
        "prores": ["matte/object_1.mov", "matte/object_2.mov"],
        "y4m": ["clip.y4m"],
    }[format_name]

    def run(stop_after: int | None) -> None:
        writers = make_writers([format_name], tmp_path, info, [1, 2])
        try:
            for index in range(10):
                if index == stop_after:
                    raise KeyboardInterrupt
                write_all(writers, frames, labels, indices=[index])
        except KeyboardInterrupt:
            for writer in writers:
                writer.abort()
        else:
            for writer in writers:
                writer.close()

    def video_files() -> list[str]:
        return sorted(
            str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.suffix != ".png"
        )

    run(stop_after=5)  # first run interrupted: nothing under the final names
    assert not any((tmp_path / name).exists() for name in finals)
    assert not [name for name in video_files() if name.endswith(".partial")]

    run(stop_after=None)
    complete = {name: (tmp_path / name).read_bytes() for name in finals}
    run(stop_after=3)  # an interrupted re-run keeps the complete files of the earlier run
    assert {name: (tmp_path / name).read_bytes() for name in finals} == complete
    assert not [name for name in video_files() if name.endswith(".partial")]


def test_leftovers_of_a_killed_run_are_removed_and_the_old_video_kept(tmp_path, scene):
    frames, labels = scene
    info = video_info(frames)
    with OverlayWriter(tmp_path / "clip_overlay.mp4", info) as writer:
        write_all([writer], frames, labels)
    old = (tmp_path / "clip_overlay.mp4").read_bytes()
    (tmp_path / ".clip_overlay.mp4.0badc0de.partial").write_bytes(b"killed mid-write")
    writer = OverlayWriter(tmp_path / "clip_overlay.mp4", info)
    assert (tmp_path / "clip_overlay.mp4").read_bytes() == old
    assert ".clip_overlay.mp4.0badc0de.partial" not in files_in(tmp_path)
    writer.write(0, frames[0], labels[0])
    writer.abort()
    assert files_in(tmp_path) == ["clip_overlay.mp4"]


def test_video_writers_need_frames_in_order(tmp_path, scene):
    frames, labels = scene
    writer = OverlayWriter(tmp_path / "o.mp4", video_info(frames))
    writer.write(0, frames[0], labels[0])
    with pytest.raises(ValueError, match="in order: expected 1"):
        writer.write(2, frames[2], labels[2])
    with pytest.raises(ValueError, match="labels must be uint8"):
        writer.write(1, frames[1], labels[1, :10])
    writer.abort()


def test_nothing_written_leaves_no_file(tmp_path, scene):
    frames, _ = scene
    OverlayWriter(tmp_path / "o.mp4", video_info(frames)).close()
    assert files_in(tmp_path) == []


# --- Y4M ----------------------------------------------------------------------------------------


def ffmpeg_read_y4m(data: bytes, tmp_path: Path) -> tuple[np.ndarray, Fraction]:
    """Let the real ffmpeg program parse the stream and re-encode it losslessly; read that back."""
    out = tmp_path / "from_y4m.mkv"
    command = [FFMPEG, "-v", "error", "-y", "-f", "yuv4mpegpipe", "-i", "-", "-c:v", "ffv1"]
    subprocess.run([*command, str(out)], input=data, check=True)
    decoded, _, stream = decode(out, "gray")
    return decoded, stream.average_rate


def test_y4m_union_matte_piped_through_ffmpeg(tmp_path, scene):
    frames, labels = scene
    info = video_info(frames, fps=30000 / 1001)
    command = [FFMPEG, "-v", "error", "-f", "yuv4mpegpipe", "-i", "-"]
    command += ["-f", "rawvideo", "-pix_fmt", "gray", "-"]
    ffmpeg = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    writer = Y4MWriter(ffmpeg.stdin, info)
    write_all([writer], frames, labels)
    writer.close()
    ffmpeg.stdin.close()
    raw = ffmpeg.stdout.read()
    assert ffmpeg.wait() == 0
    decoded = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 48, 64)
    assert np.array_equal(decoded, (labels != 0).astype(np.uint8) * 255)


def test_y4m_header_and_single_object(tmp_path, scene):
    frames, labels = scene
    stream = io.BytesIO()
    writer = Y4MWriter(stream, video_info(frames, fps=30000 / 1001), object_id=2)
    write_all([writer], frames, labels)
    writer.close()
    data = stream.getvalue()
    assert data.startswith(b"YUV4MPEG2 W64 H48 F30000:1001 Ip A1:1 Cmono\nFRAME\n")
    decoded, rate = ffmpeg_read_y4m(data, tmp_path)
    assert rate == Fraction(30000, 1001)
    assert np.array_equal(decoded, (labels == 2).astype(np.uint8) * 255)


def test_y4m_to_stdout_and_to_a_file(tmp_path, scene, capsysbinary):
    frames, labels = scene
    info = video_info(frames)
    [to_stdout] = make_writers(["y4m"], "-", info, [1, 2])
    write_all([to_stdout], frames[:2], labels[:2])
    to_stdout.close()
    assert capsysbinary.readouterr().out.startswith(b"YUV4MPEG2 W64 H48 F25:1 ")

    [to_file] = make_writers(["y4m"], tmp_path, info, [1, 2], y4m_object=1)
    write_all([to_file], frames, labels)
    to_file.close()
    decoded, rate = ffmpeg_read_y4m((tmp_path / "clip.y4m").read_bytes(), tmp_path)
    assert rate == 25
    assert np.array_equal(decoded, (labels == 1).astype(np.uint8) * 255)


def test_y4m_reader_closing_the_pipe_is_a_user_error(scene):
    frames, labels = scene
    reader = [sys.executable, "-c", "import sys; sys.stdin.buffer.read(100)"]
    process = subprocess.Popen(reader, stdin=subprocess.PIPE)
    writer = Y4MWriter(process.stdin, video_info(frames))
    writer.write(0, frames[0], labels[0])  # flushed at once, so the reader gets its 100 bytes
    process.wait(timeout=30)
    with pytest.raises(UserError, match="-: the program reading the output closed it"):
        for index in range(1, 200):  # 600 kB: far more than a pipe buffers
            writer.write(index, frames[0], labels[0])
    with suppress(BrokenPipeError):
        process.stdin.close()


# --- summary.json -------------------------------------------------------------------------------


def test_summary_json_counts_each_objects_pixels(tmp_path, scene):
    frames, labels = scene
    [writer] = make_writers(["summary"], tmp_path, video_info(frames), [1, 2])
    write_all([writer], frames, labels)
    writer.timings = {"total": 1.5, "model": 1.25}
    writer.close()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["num_frames"] == 10 and summary["frames_done"] == 10
    assert summary["objects"] == [1, 2]
    assert summary["area_pixels"]["1"] == [int((lab == 1).sum()) for lab in labels]
    assert summary["area_pixels"]["2"] == [int((lab == 2).sum()) for lab in labels]
    assert summary["timings_seconds"] == {"total": 1.5, "model": 1.25}
    assert summary["video"] == "/videos/clip.mp4" and summary["fps"] == 25.0
    assert files_in(tmp_path) == ["summary.json"]


def test_summary_of_a_resumed_run_is_complete(tmp_path, scene):
    frames, labels = scene
    info = video_info(frames)
    first = SummaryWriter(tmp_path / "summary.json", info, [1, 2])
    write_all([first], frames, labels, indices=range(6))
    first.close()
    partial = json.loads((tmp_path / "summary.json").read_text())
    assert partial["frames_done"] == 6 and partial["area_pixels"]["1"][6:] == [None] * 4

    resumed = SummaryWriter(tmp_path / "summary.json", info, [1, 2])
    assert resumed.completed_frames() == set(range(6))
    write_all([resumed], frames, labels, indices=range(6, 10))
    resumed.close()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["area_pixels"]["2"] == [int((lab == 2).sum()) for lab in labels]

    other_objects = SummaryWriter(tmp_path / "summary.json", info, [1])
    assert other_objects.completed_frames() == set()  # a different run starts afresh


# --- the factory --------------------------------------------------------------------------------


def test_make_writers_builds_each_format_in_its_place(tmp_path, scene):
    frames, _ = scene
    formats = ["davis", "youtube-vos", "overlay", "matte", "prores", "y4m", "summary", "davis"]
    writers = make_writers(formats, tmp_path / "out", video_info(frames), [1, 2], sequence="seq")
    kinds = [type(w).__name__ for w in writers]
    assert kinds == [
        "PalettePNGWriter",
        "PalettePNGWriter",
        "OverlayWriter",
        "MattePNGWriter",
        "MatteVideoWriter",
        "MatteVideoWriter",
        "Y4MWriter",
        "SummaryWriter",
    ]
    assert writers[0].folder == tmp_path / "out" / "seq"
    assert writers[1].folder == tmp_path / "out" / "Annotations" / "seq"
    assert writers[2].path == tmp_path / "out" / "seq_overlay.mp4"
    assert writers[5].video_path(2) == tmp_path / "out" / "matte" / "object_2.mov"
    for writer in writers:
        writer.abort()


def test_make_writers_refuses_bad_requests(tmp_path, scene):
    frames, _ = scene
    info = video_info(frames)
    with pytest.raises(UserError, match="unknown output format 'gif'"):
        make_writers(["davis", "gif"], tmp_path, info, [1])
    with pytest.raises(
        UserError, match="-: only the y4m format can be streamed to stdout, not davis"
    ):
        make_writers(["y4m", "davis"], "-", info, [1])
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(UserError, match="taken: exists and is not a folder"):
        make_writers(["davis"], tmp_path / "taken", info, [1])


def test_streaming_to_stdout_keeps_messages_off_stdout(tmp_path):
    """A damaged video read with warnings, masks streamed as Y4M: stdout holds only the stream."""
    frames, _ = moving_shapes(num_frames=12, height=48, width=64, num_objects=2, seed=8)
    video = cut_file(make_video(tmp_path / "clip.mkv", frames), 0.6)
    script = (
        "import numpy as np\n"
        "from seggpt_video.io import make_writers, open_video\n"
        f"with open_video({str(video)!r}) as video:\n"
        "    [writer] = make_writers(['y4m'], '-', video.info, [1])\n"
        "    for index, frame in video.iter_frames():\n"
        "        writer.write(index, frame, (frame[..., 0] > 128).astype(np.uint8))\n"
        "    writer.close()\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True)
    assert b"truncated" in run.stderr  # the warning went to stderr
    decoded, _ = ffmpeg_read_y4m(run.stdout, tmp_path)
    with pytest.warns(VideoWarning):
        source = open_video(video)
    expected = [(frame[..., 0] > 128).astype(np.uint8) * 255 for _, frame in source.iter_frames()]
    assert 0 < len(expected) < 12
    assert np.array_equal(decoded, np.stack(expected))
