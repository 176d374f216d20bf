"""The Python API: the same masks as `run`, lazy frames, examples from outside the video."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthetic_media import make_video, moving_shapes
from typer.testing import CliRunner

import seggpt_video
from seggpt_video.cli.app import app
from seggpt_video.errors import UserError
from seggpt_video.io.masks import write_palette_png
from seggpt_video.io.video import open_video

FRAMES = 8
HEIGHT, WIDTH = 64, 96
runner = CliRunner()
MODEL = ["--model", "seggpt-tiny", "--device", "cpu", "--dtype", "fp32"]


@pytest.fixture(scope="module")
def scene():
    return moving_shapes(FRAMES, HEIGHT, WIDTH, num_objects=2, seed=11)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, scene) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("clip")
    frames, labels = scene
    video = make_video(folder / "clip.mp4", frames, fps=25)
    mask = folder / "first.png"
    write_palette_png(mask, labels[0])
    return video, mask


@pytest.fixture(scope="module")
def segmenter():
    return seggpt_video.load("seggpt-tiny", device="cpu", dtype="fp32")


def run(*args: object) -> object:
    result = runner.invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def written(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))]


def test_importing_the_package_loads_no_torch():
    code = "import sys, seggpt_video; print('torch' in sys.modules, callable(seggpt_video.load))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["False", "True"], result.stderr


def test_labels_equal_runs_outputs_for_a_path_and_for_arrays(tmp_path, clip, segmenter):
    video, mask = clip
    run("run", video, "--mask", mask, "-o", tmp_path / "out", "-f", "davis", *MODEL)
    expected = written(tmp_path / "out" / "clip")
    assert len(expected) == FRAMES

    from_path = list(segmenter.segment(video, masks={0: mask}))
    assert [f.index for f in from_path] == list(range(FRAMES))
    with open_video(video) as source:
        decoded = [frame for _, frame in source.iter_frames()]
    first = np.asarray(Image.open(mask))
    from_arrays = list(segmenter.segment(decoded, masks={0: first}))
    for frame, by_path, by_arrays, decoded_frame in zip(expected, from_path, from_arrays, decoded):
        assert np.array_equal(by_path.labels, frame)
        assert np.array_equal(by_arrays.labels, frame)
        assert np.array_equal(by_path.image, decoded_frame)
    # the clip is not trivial: the model keeps both objects on the last frame
    assert set(np.unique(expected[-1])) == {0, 1, 2}


def test_a_generator_is_read_once_and_lazily(clip, segmenter, scene):
    video, mask = clip
    with open_video(video) as source:
        decoded = [frame for _, frame in source.iter_frames()]
    pulled = []

    def frames():
        for index, frame in enumerate(decoded):
            pulled.append(index)
            yield frame

    results = segmenter.segment(frames(), masks={0: mask})
    first = next(results)
    assert first.index == 0 and len(pulled) <= 2  # not read ahead
    rest = list(results)
    assert len(rest) == FRAMES - 1
    expected = list(segmenter.segment(decoded, masks={0: mask}))
    assert all(np.array_equal(a.labels, b.labels) for a, b in zip([first, *rest], expected))


def test_an_example_made_of_frame_0_gives_the_masks_of_its_annotation(tmp_path, clip):
    """--memory 0, --crops off: the prompts of every later frame are the same image and mask
    either way (a crop pass starts on an annotated frame of the clip, not on an example)."""
    video, mask = clip
    with open_video(video) as source:
        Image.fromarray(source.get_frame(0)).save(tmp_path / "frame0.png")
    common = ["-f", "davis", "--memory", "0", "--crops", "off", *MODEL]
    run("run", video, "--mask", mask, "-o", tmp_path / "annotated", *common)
    run(
        "run",
        video,
        "--example",
        f"{tmp_path / 'frame0.png'}:{mask}",
        "-o",
        tmp_path / "ex",
        *common,
    )
    annotated = written(tmp_path / "annotated" / "clip")
    from_example = written(tmp_path / "ex" / "clip")
    assert len(annotated) == len(from_example) == FRAMES
    for later in range(1, FRAMES):
        assert np.array_equal(annotated[later], from_example[later]), later
    assert set(np.unique(from_example[0])) == {0, 1, 2}  # frame 0 itself is predicted


def test_examples_from_another_clip_need_no_mask(tmp_path, clip, segmenter, scene):
    video, _ = clip
    other_frames, other_labels = moving_shapes(4, 80, 80, num_objects=2, seed=11)
    image, labels = other_frames[2], other_labels[2]  # another size and another moment
    results = list(segmenter.segment(video, examples=[(image, labels)]))
    assert len(results) == FRAMES
    truth = scene[1]
    for frame in results:
        for object_id in (1, 2):
            found, true = frame.labels == object_id, truth[frame.index] == object_id
            assert (found & true).sum() / max((found | true).sum(), 1) > 0.5


def test_a_correction_recomputes_only_the_frames_from_it(tmp_path, clip, segmenter, scene):
    video, mask = clip
    fix = tmp_path / "fix.png"
    write_palette_png(fix, scene[1][5])
    out = tmp_path / "out"
    segmenter.write(video, out, ["davis"], masks={0: mask})
    before = written(out / "clip")
    stamps = [p.stat().st_mtime_ns for p in sorted((out / "clip").glob("*.png"))]
    seen = []
    segmenter.write(
        video, out, ["davis"], masks={0: mask, 5: fix}, restart_from=5, on_frame=seen.append
    )
    assert [f.index for f in seen if not f.recalled] == [5, 6, 7]
    after = written(out / "clip")
    assert [p.stat().st_mtime_ns for p in sorted((out / "clip").glob("*.png"))][:5] == stamps[:5]
    assert all(np.array_equal(a, b) for a, b in zip(before[:5], after[:5]))
    segmenter.write(video, tmp_path / "fresh", ["davis"], masks={0: mask, 5: fix})
    fresh = written(tmp_path / "fresh" / "clip")
    assert all(np.array_equal(a, b) for a, b in zip(after, fresh))
    assert np.array_equal(after[5], scene[1][5])


def test_bad_api_input_raises_a_one_line_user_error(tmp_path, clip, segmenter):
    video, mask = clip
    cases = [
        (lambda: segmenter.segment(video), "no mask and no example"),
        (lambda: segmenter.segment(video, masks={FRAMES: mask}), "outside the frames"),
        (lambda: segmenter.segment(video, masks={0: np.zeros((3, 3), np.uint8)}), "the video is"),
        (
            lambda: segmenter.segment(video, masks={0: np.zeros((HEIGHT, WIDTH), np.float32)}),
            "uint8",
        ),
        (lambda: segmenter.segment([np.zeros((4, 4), np.uint8)], masks={0: mask}), "frame 0"),
        (lambda: segmenter.segment(video, examples=[(tmp_path / "no.png", mask)]), "no such"),
        (lambda: seggpt_video.load(task="panoptic", lazy=True), "task"),
    ]
    for call, words in cases:
        with pytest.raises(UserError, match=words) as caught:
            call()
        assert "\n" not in str(caught.value)


def test_a_changed_example_file_is_a_change_of_settings(tmp_path, clip, scene):
    video, _ = clip
    image, mask = tmp_path / "example.png", tmp_path / "example_mask.png"
    Image.fromarray(scene[0][3]).save(image)
    write_palette_png(mask, scene[1][3])
    out = tmp_path / "out"
    args = ["run", video, "--example", f"{image}:{mask}", "-o", out, "-f", "davis", *MODEL]
    run(*args)
    again = runner.invoke(app, [str(a) for a in args])  # the same files: resumes, nothing to do
    assert again.exit_code == 0, again.output
    write_palette_png(mask, scene[1][4])  # same path, other content
    changed = runner.invoke(app, [str(a) for a in args])
    assert changed.exit_code != 0 and "examples" in str(changed.exception)
