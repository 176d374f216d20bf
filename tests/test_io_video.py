"""Video input: every container, both backends, folders, rotation, odd sizes, VFR, bad files."""

from __future__ import annotations

import subprocess
import time
import weakref
from pathlib import Path

import av
import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image
from synthetic_media import (
    cut_file,
    ffmpeg_frames,
    make_frame_folder,
    make_video,
    moving_shapes,
)

from seggpt_video.errors import UserError
from seggpt_video.io.video import VideoWarning, open_video

CONTAINERS = ["mp4", "mov", "mkv", "webm", "avi"]


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    frames, _ = moving_shapes(num_frames=12, height=48, width=64, num_objects=3, seed=1)
    return frames


@pytest.fixture(scope="module")
def videos(tmp_path_factory, clip) -> dict:
    folder = tmp_path_factory.mktemp("videos")
    return {ext: make_video(folder / f"clip.{ext}", clip) for ext in CONTAINERS}


def read_all(source) -> np.ndarray:
    indices, frames = zip(*source.iter_frames(), strict=True)
    assert list(indices) == list(range(source.info.num_frames))
    return np.stack(frames)


def assert_matches(got: np.ndarray, source: np.ndarray, max_error: float) -> None:
    """Same shape, each decoded frame nearest to its own source frame, and close to it."""
    assert got.shape == source.shape
    assert got.dtype == np.uint8
    errors = np.abs(got[:, None].astype(np.int16) - source[None]).mean(axis=(2, 3, 4))
    assert list(errors.argmin(axis=1)) == list(range(len(source)))
    assert errors.diagonal().max() < max_error


@pytest.mark.parametrize("backend", ["auto", "pyav", "decord"])
@pytest.mark.parametrize("ext", CONTAINERS)
def test_every_container_reads_with_every_backend(videos, clip, ext, backend):
    with open_video(videos[ext], backend=backend) as video:
        info = video.info
        frames = read_all(video)
    assert (info.num_frames, info.width, info.height, info.rotation) == (12, 64, 48, 0)
    assert info.fps == pytest.approx(25.0)
    assert info.timestamps == pytest.approx([i / 25 for i in range(12)])
    assert info.frame_names == tuple(f"{i:05d}" for i in range(12))
    assert info.name == "clip"
    assert info.backend == (backend if backend != "auto" else "pyav")
    assert_matches(frames, clip, max_error=8.0)


def test_backends_decode_the_same_pixels(videos):
    for ext in CONTAINERS:
        with open_video(videos[ext], backend="pyav") as a, open_video(videos[ext], "decord") as b:
            difference = np.abs(read_all(a).astype(int) - read_all(b)).mean()
        assert difference < 1.0, ext


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_seeking_gives_the_same_frames_as_decoding_in_order(videos, backend):
    # x264 with B-frames and a keyframe every 6 frames: starts land on and between keyframes
    with open_video(videos["mp4"], backend=backend) as video:
        in_order = read_all(video)
        for start in [1, 5, 6, 7, 11]:
            indices, frames = zip(*video.iter_frames(start), strict=True)
            assert list(indices) == list(range(start, 12))
            assert np.array_equal(np.stack(frames), in_order[start:])
        for index in [0, 3, 6, 11]:
            assert np.array_equal(video.get_frame(index), in_order[index])
        assert list(video.iter_frames(12)) == []
        with pytest.raises(IndexError):
            video.get_frame(12)
        with pytest.raises(IndexError):
            next(video.iter_frames(-1))


@pytest.mark.parametrize("rotation", [90, 180, 270])
@pytest.mark.parametrize("ext", ["mp4", "mov", "mkv"])
def test_rotated_video_is_returned_upright(tmp_path, clip, ext, rotation):
    path = make_video(tmp_path / f"rotated.{ext}", clip, rotation=rotation)
    upright = np.rot90(clip, rotation // 90, axes=(1, 2))
    with open_video(path) as video:
        info = video.info
        frames = read_all(video)
    assert info.rotation == rotation
    assert (info.height, info.width) == upright.shape[1:3]
    assert info.backend == "pyav"  # decord mishandles rotation
    assert_matches(frames, upright, max_error=8.0)
    # the ffmpeg program rotates the way players do: the same picture
    players = ffmpeg_frames(path, info.width, info.height)
    assert np.abs(players.astype(int) - frames).mean() < 1.0


def test_decord_backend_refuses_a_rotated_video(tmp_path, clip):
    path = make_video(tmp_path / "rotated.mp4", clip, rotation=90)
    with pytest.raises(UserError, match=r"rotated\.mp4: decord ignores the 90 degree"):
        open_video(path, backend="decord")


@pytest.mark.parametrize(
    "ext, height, width",
    [("mp4", 96, 64), ("mov", 64, 36), ("mp4", 47, 63), ("webm", 47, 63), ("avi", 47, 63)],
)
def test_portrait_and_odd_sizes(tmp_path, ext, height, width):
    frames, _ = moving_shapes(num_frames=10, height=height, width=width, num_objects=2, seed=3)
    path = make_video(tmp_path / f"size.{ext}", frames)
    for backend in ["pyav", "decord"]:
        with open_video(path, backend=backend) as video:
            assert (video.info.width, video.info.height) == (width, height)
            assert_matches(read_all(video), frames, max_error=10.0)


def resident_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """400 frames of 480x360: 207 MB decoded, far more than a reader should hold."""
    frames, _ = moving_shapes(num_frames=20, height=360, width=480, num_objects=2, seed=4)
    folder = tmp_path_factory.mktemp("long")
    return make_video(folder / "long.mp4", np.concatenate([frames] * 20), gop=50)


def test_streaming_behind_a_slow_model_keeps_memory_flat(long_clip):
    # decord, the old default, decoded the whole clip ahead of a slow consumer (6 GB at 1080p)
    with open_video(long_clip) as video:
        frames = video.iter_frames()
        next(frames)
        before = resident_mb()
        for _ in range(4):
            time.sleep(0.4)  # a model's time per frame
            next(frames)
        grown = resident_mb() - before
        frames.close()
    assert grown < 40, f"resident memory grew {grown:.0f} MB over 5 frames"


def test_decord_random_access_stops_its_read_ahead(long_clip):
    with open_video(long_clip, backend="decord") as video:
        video.get_frame(100)
        before = resident_mb()
        time.sleep(1.0)
        video.get_frame(30)
        time.sleep(0.5)
        grown = resident_mb() - before
    assert grown < 40, f"resident memory grew {grown:.0f} MB while idle"


def test_auto_backend_avoids_decord_where_it_returns_broken_frames(tmp_path):
    # decord 0.6 returns 4-channel garbage for frames 48 pixels wide (seen in this environment)
    frames, _ = moving_shapes(num_frames=6, height=64, width=48, num_objects=2, seed=3)
    path = make_video(tmp_path / "narrow.mkv", frames)
    with pytest.raises(UserError, match=r"narrow\.mkv: decord returned a frame of shape"):
        open_video(path, backend="decord")
    with open_video(path) as video:
        assert video.info.backend == "pyav"
        assert_matches(read_all(video), frames, max_error=8.0)


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_variable_frame_rate_keeps_each_timestamp(tmp_path, clip, ext):
    times = [0.0, 0.04, 0.1, 0.3, 0.31, 0.5, 0.55, 0.6, 0.9, 1.0, 1.2, 1.25]
    path = make_video(tmp_path / f"vfr.{ext}", clip, timestamps=times)
    with open_video(path) as video:
        info = video.info
        frames = read_all(video)
    assert info.num_frames == 12
    assert info.timestamps == pytest.approx(times, abs=1e-3)
    assert info.fps == pytest.approx(11 / 1.25)  # the mean rate
    assert_matches(frames, clip, max_error=8.0)


def test_frame_count_comes_from_decoding_not_from_the_header(tmp_path, clip):
    path = cut_file(make_video(tmp_path / "clip.avi", clip), 0.5)
    with av.open(str(path)) as container:
        header_count = container.streams.video[0].frames
    with pytest.warns(VideoWarning, match=r"cut_clip\.avi: .*truncated"):
        video = open_video(path, backend="pyav")
    assert header_count == 12
    assert 0 < video.info.num_frames < 12
    frames = read_all(video)
    assert_matches(frames, clip[: video.info.num_frames], max_error=8.0)


@pytest.mark.parametrize("ext", ["mkv", "webm", "avi"])
def test_truncated_video_gives_the_frames_that_decode_and_a_warning(tmp_path, clip, ext):
    path = cut_file(make_video(tmp_path / f"clip.{ext}", clip), 0.5)
    with pytest.warns(VideoWarning, match=rf"cut_clip\.{ext}: .*truncated"):
        video = open_video(path)
    with video:
        count = video.info.num_frames
        assert 0 < count < 12
        assert len(video.info.timestamps) == count
        assert_matches(read_all(video), clip[:count], max_error=8.0)


def test_mp4_cut_before_its_index_is_a_user_error(tmp_path, clip):
    path = cut_file(make_video(tmp_path / "clip.mp4", clip), 0.5)
    with pytest.raises(UserError, match=r"cut_clip\.mp4: cannot read it as a video"):
        open_video(path)


def test_folder_of_png_frames_in_natural_order(tmp_path, clip):
    names = [str(i) for i in range(12)]  # 0.png ... 11.png: 10 and 11 sort after 9
    folder = make_frame_folder(tmp_path / "dance", clip, ext="png", names=names)
    (folder / "notes.txt").write_text("not a frame")
    with open_video(folder, fps=30) as video:
        info = video.info
        frames = read_all(video)
        assert np.array_equal(video.get_frame(10), clip[10])
    assert np.array_equal(frames, clip)  # PNG is lossless
    assert info.frame_names == tuple(names)
    assert (info.num_frames, info.width, info.height, info.fps) == (12, 64, 48, 30.0)
    assert info.timestamps is None and info.backend == "folder" and info.name == "dance"


def test_folder_of_jpg_frames(tmp_path, clip):
    folder = make_frame_folder(tmp_path / "jpgs", clip, ext="jpg")
    with open_video(folder) as video:
        assert video.info.frame_names[:2] == ("00000", "00001")
        assert_matches(read_all(video), clip, max_error=8.0)


def test_folder_frames_follow_exif_orientation(tmp_path, clip):
    folder = tmp_path / "phone"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    for i, image in enumerate(clip[:3]):
        Image.fromarray(image).save(folder / f"{i}.jpg", quality=95, exif=exif)
    with open_video(folder) as video:
        assert (video.info.width, video.info.height) == (48, 64)
        assert_matches(read_all(video), np.rot90(clip[:3], -1, axes=(1, 2)), max_error=8.0)


def test_folder_problems_name_the_file(tmp_path, clip):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no frames here")
    with pytest.raises(UserError, match=r"empty: no \.jpg/\.jpeg/\.png frames"):
        open_video(empty)

    mixed = make_frame_folder(tmp_path / "mixed", clip[:3])
    Image.fromarray(clip[0, :40]).save(mixed / "00003.png")
    with pytest.raises(UserError, match=r"00003\.png: the frame is 64x40 but 00000\.png is 64x48"):
        open_video(mixed)

    garbage = make_frame_folder(tmp_path / "garbage", clip[:3])
    (garbage / "00001.png").write_bytes(b"this is not a png")
    with pytest.raises(UserError, match=r"00001\.png: cannot read the frame as an image"):
        open_video(garbage)

    cut_png = make_frame_folder(tmp_path / "cut_png", clip[:3])
    cut_file(cut_png / "00002.png", 0.6, out=cut_png / "00002.png")
    with pytest.raises(UserError, match=r"00002\.png: cannot read the frame .*truncated"):
        open_video(cut_png)

    cut_jpg = make_frame_folder(tmp_path / "cut_jpg", clip[:3], ext="jpg")
    cut_file(cut_jpg / "00002.jpg", 0.6, out=cut_jpg / "00002.jpg")
    with open_video(cut_jpg) as video:  # a JPEG header reads fine: the damage shows on decoding
        with pytest.raises(UserError, match=r"00002\.jpg: cannot decode the frame .*truncated"):
            read_all(video)

    twins = make_frame_folder(tmp_path / "twins", clip[:2], ext="png")
    make_frame_folder(twins, clip[:1], ext="jpg")
    with pytest.raises(UserError, match=r"two frames named '00000'"):
        open_video(twins)


def test_bad_files_are_user_errors_naming_the_file(tmp_path):
    with pytest.raises(UserError, match=r"missing\.mp4: no such file or folder"):
        open_video(tmp_path / "missing.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("hello " * 200)
    with pytest.raises(UserError, match=r"notes\.mp4: cannot read it as a video"):
        open_video(text)
    with pytest.raises(UserError, match=r"unknown video backend 'opencv'"):
        open_video(text, backend="opencv")


def most_frames_alive_at_once(source) -> int:
    """Iterate, dropping each frame at once; count how many frames the source still keeps."""
    alive: list[weakref.ref] = []
    most = 0
    for _, frame in source.iter_frames():
        alive.append(weakref.ref(frame))
        del frame
        most = max(most, sum(ref() is not None for ref in alive))
    assert len(alive) == source.info.num_frames
    return most


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_frames_are_streamed_not_loaded_all_at_once(tmp_path, backend):
    frames, _ = moving_shapes(num_frames=40, height=96, width=128, num_objects=2, seed=5)
    path = make_video(tmp_path / "long.mkv", frames)
    with open_video(path, backend=backend) as video:
        assert most_frames_alive_at_once(video) <= 2  # a reader that preloads keeps all 40


@pytest.mark.slow
def test_4k_video_streams_one_frame_at_a_time(tmp_path):
    path = tmp_path / "uhd.mp4"
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi"]
    command += ["-i", "testsrc2=size=3840x2160:rate=30:duration=1", "-c:v", "libx264"]
    command += ["-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(command, check=True)
    for backend in ["pyav", "decord"]:
        with open_video(path, backend=backend) as video:
            assert (video.info.width, video.info.height, video.info.num_frames) == (3840, 2160, 30)
            assert most_frames_alive_at_once(video) <= 2
