"""Bad input, all of it (issue 13): every command refuses a bad file or option in one line.

Each case is a command line as a user types it. It must end with exit code 2, exactly one
non-empty line on stderr that names the problem (and the file, where there is one), no
traceback, and its output folder as it was before the call: a sentinel file from an "earlier
run" unchanged and no file written (a new empty folder is tolerated).

Starting Python and importing torch costs ~1.5 s of CPU per process, so the cases do not each
start an interpreter: one ``python`` process (this file run as a script) imports the CLI once
and forks a child per case, which runs ``python -m seggpt_video.cli`` (runpy) with its own
argv, working folder, stdout and stderr. An exception that escapes the CLI prints its
traceback and exits 1 there, as the interpreter would. The fork only shortens start-up:
``test_forked_case_equals_a_fresh_interpreter`` runs cases both ways and compares them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from synthetic_media import cut_file, make_video, moving_shapes
from test_eval_helpers import ground_truth, make_davis, write_predictions

from seggpt_video.io.masks import write_palette_png
from seggpt_video.model import build_model, save_checkpoint
from seggpt_video.training.tuning import PROMPT_FORMAT, TunedPrompt, save_tuned_prompt

HERE = Path(__file__).resolve()
FRAMES, HEIGHT, WIDTH = 6, 48, 64
SENTINEL = "earlier.txt"
CASE_SECONDS = 30  # a case that passes takes ~1 s; one that starts the real work is cut short
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the driver forks a child per case")


@dataclass(frozen=True)
class Case:
    """One bad command line and what its one line of error must say.

    args: the command line after ``seggpt-video``; ``{name}`` is a file of the shared inputs
    (see ``make_inputs``) and ``{out}`` the case's own folder (see ``prepare_case_folder``).
    says: regular expressions the error line must all match (any case). tty: stdout is a
    terminal.
    """

    name: str
    args: tuple[str, ...]
    says: tuple[str, ...]
    tty: bool = False
    root_can_write: bool = False  # chmod does not stop root: skip when running as root


def case(
    name: str, command: str, *says: str, tty: bool = False, root_can_write: bool = False
) -> Case:
    """A case from its command line as one string (the paths in it hold no spaces)."""
    return Case(name, tuple(command.split()), says, tty, root_can_write)


RUN = "run {video} --mask {mask} --checkpoint {ckpt} -o {out}/result"
EVAL = "eval {davis} -o {out}/result"
DEMO = "demo --frames 3 -o {out}/result"
TUNE = "tune {{video}} {masks} --checkpoint {weights} --steps 1 -o {{out}}/{to}.safetensors"
TRAIN = "train --preset test-small --steps 1 --batch-size 1 --no-bf16 -o {out}/result"

CASES = [
    # run: the video
    case("run-video-text", "run {text} --mask {mask} -o {out}/r", r"notes\.txt", r"video"),
    case(
        "run-video-missing",
        "run {out}/nosuch.mp4 --mask {mask} -o {out}/r",
        r"nosuch\.mp4",
        "no such",
    ),
    case(
        "run-video-truncated", "run {cut_mp4} --mask {mask} -o {out}/r", r"cut_clip\.mp4", "video"
    ),
    case("run-video-empty-folder", "run {empty_dir} --mask {mask} -o {out}/r", r"empty", "frame"),
    # run: the masks
    case(
        "run-mask-wrong-size",
        "run {video} --mask {small_mask} -o {out}/r",
        r"small\.png",
        r"64x48",
        "resize",
    ),
    case("run-mask-empty", "run {video} --mask {black_mask} -o {out}/r", r"black\.png", "empty"),
    case("run-mask-text", "run {video} --mask {text} -o {out}/r", r"notes\.txt", "text"),
    case(
        "run-mask-truncated-png",
        "run {video} --mask {cut_mask} -o {out}/r",
        r"cut_first\.png",
        "cannot read",
    ),
    case("run-mask-folder", "run {video} --mask {empty_dir} -o {out}/r", r"empty", "folder"),
    case("run-mask-16bit-ramp", "run {video} --mask {ramp16} -o {out}/r", r"ramp16\.png", "16-bit"),
    case(
        "run-mask-frame-not-a-number",
        RUN + " --mask notanumber:{mask}",
        r"notanumber",
        r"frame",
        r"^(?!.*annotated twice)",
    ),
    case(
        "run-mask-frame-negative",
        RUN + " --mask -3:{mask}",
        r"-3",
        r"frame",
        r"^(?!.*annotated twice)",
    ),
    case("run-mask-frame-past-the-end", RUN + " --mask 999:{mask}", r"999", r"frame"),
    case(
        "run-prompt-file-of-another-model",
        RUN + " --prompt-file {tiny_prompt}",
        r"tiny_prompt\.safetensors",
        r"64x64",
    ),
    case(
        "run-prompt-file-without-masks",
        RUN + " --prompt-file {prompt_no_masks}",
        r"no_masks\.safetensors",
        "images and masks",
    ),
    case(
        "run-prompt-file-wrong-shapes",
        RUN + " --prompt-file {prompt_3d}",
        r"prompt_3d\.safetensors",
        r"\(P, 3, S, S\)",
    ),
    # run: the model and its options
    case(
        "run-checkpoint-text",
        "run {video} --mask {mask} --checkpoint {text} -o {out}/r",
        r"notes\.txt",
        "text",
    ),
    case(
        "run-checkpoint-png",
        "run {video} --mask {mask} --checkpoint {png} -o {out}/r",
        r"image\.png",
        "PNG",
    ),
    case(
        "run-checkpoint-truncated",
        "run {video} --mask {mask} --checkpoint {cut_st} -o {out}/r",
        r"cut_small\.safetensors",
        "truncated",
    ),
    case(
        "run-prompt-file-is-weights",
        RUN + " --prompt-file {ckpt}",
        r"small\.safetensors",
        "not a tuned prompt",
    ),
    case("run-dtype-bogus", RUN + " --dtype bogus", r"--dtype", "bogus"),
    case("run-device-cuda", RUN + " --device cuda", r"--device", "CUDA"),
    case("run-memory-negative", RUN + " --memory -1", r"--memory", "-1"),
    case("run-batch-size-zero", RUN + " --batch-size 0", r"--batch-size", "0"),
    case("run-ensemble-nosuch", RUN + " --ensemble nosuch", r"--ensemble", "nosuch"),
    case("run-refine-bogus", RUN + " --refine bogus", r"--refine", "bogus"),
    case("run-format-nosuch", RUN + " --format nosuch", r"nosuch", "format"),
    case("run-frames-empty-range", RUN + " --frames 5:2", r"5:2", r"end|range|empty"),
    # run: examples from outside the video (checked before the model loads)
    case("run-no-mask-no-example", "run {video} -o {out}/r", r"clip\.mp4", r"no mask", "example"),
    case(
        "run-example-no-colon",
        "run {video} --example {png} -o {out}/r",
        r"image\.png",
        "IMAGE:MASK",
    ),
    case(
        "run-example-image-missing",
        "run {video} --example {out}/nosuch.jpg:{mask} -o {out}/r",
        r"nosuch\.jpg",
        "no such",
    ),
    case(
        "run-example-mask-missing",
        "run {video} --example {png}:{out}/nosuch.png -o {out}/r",
        r"nosuch\.png",
        "no such",
    ),
    case(
        "run-example-mask-other-size",
        "run {video} --example {png}:{small_mask} -o {out}/r",
        r"small\.png",
        r"32x24",
        r"64x48",
    ),
    case(
        "run-example-mask-empty",
        "run {video} --example {png}:{black_mask} -o {out}/r",
        r"black\.png",
        "empty",
    ),
    case(
        "run-example-image-is-text",
        "run {video} --example {text}:{mask} -o {out}/r",
        r"notes\.txt",
        "cannot decode",
    ),
    case(
        "batch-example-mask-empty",
        "batch {empty_dir} --example {png}:{black_mask} -o {out}/r",
        r"black\.png",
        "empty",
    ),
    case(
        "eval-example-image-missing",
        "eval {davis} -o {out}/r --example {out}/nosuch.jpg:{mask}",
        r"nosuch\.jpg",
        "no such",
    ),
    # run: where the output goes
    case(
        "run-output-under-a-file",
        "run {video} --mask {mask} -o {out}/notes.txt/result",
        r"notes\.txt",
        r"cannot create|not a folder",
    ),
    case(
        "run-output-is-a-file",
        "run {video} --mask {mask} --checkpoint {ckpt} -o {out}/notes.txt",
        r"notes\.txt",
        r"not a folder|exists",
    ),
    case(
        "run-output-in-read-only-folder",
        "run {video} --mask {mask} --checkpoint {ckpt} -o {out}/locked/result",
        r"locked",
        r"cannot|permission|writ",
        root_can_write=True,
    ),
    case(
        "run-stdout-matte-to-terminal",
        "run {video} --mask {mask} --checkpoint {ckpt} -o - --format matte",
        r"terminal",
        tty=True,
    ),
    # eval
    case("eval-not-a-dataset", "eval {empty_dir} -p {preds} -o {out}/r", r"empty", "DAVIS"),
    case("eval-dataset-missing", "eval {out}/nosuch -p {preds} -o {out}/r", r"nosuch", "not found"),
    case(
        "eval-sequence-unknown",
        "eval {davis} -p {preds} -o {out}/r --sequences nosuch",
        r"nosuch",
        "sequence",
    ),
    case(
        "eval-predictions-missing",
        "eval {davis} -p {out}/nopreds -o {out}/r",
        r"nopreds",
        "not found",
    ),
    case("eval-checkpoint-png", EVAL + " --checkpoint {png}", r"image\.png", "PNG"),
    case("eval-refine-bogus", EVAL + " --refine bogus", r"--refine", "bogus"),
    case(
        "eval-split-file-missing",
        "eval {davis} --benchmark davis2016 -p {preds} -o {out}/r",
        r"ImageSets/2016/val\.txt",
        "not found",
    ),
    case(
        "eval-listed-sequence-without-frames",
        "eval {davis_ghost} -p {preds} -o {out}/r",
        r"ghost",
        "no JPEG frames",
    ),
    case(
        "eval-annotation-corrupt",
        "eval {davis_corrupt} -p {preds} -o {out}/r --sequences alpha",
        r"alpha/00001\.png",
        "cannot read",
    ),
    case(
        "eval-youtube-meta-broken",
        "eval {youtube_broken} -p {preds} -o {out}/r",
        r"meta\.json",
        "YouTube-VOS",
    ),
    case(
        "eval-output-is-a-file",
        "eval {davis} --checkpoint {ckpt} -o {out}/notes.txt",
        r"notes\.txt",
        r"not a folder|exists",
    ),
    # demo
    case("demo-checkpoint-text", DEMO + " --checkpoint {text}", r"notes\.txt", "text"),
    case("demo-checkpoint-png", DEMO + " --checkpoint {png}", r"image\.png", "PNG"),
    case(
        "demo-checkpoint-truncated-pth",
        DEMO + " --checkpoint {cut_pth}",
        r"cut_small\.pth",
        "truncated",
    ),
    case(
        "demo-prompt-file-text",
        DEMO + " --checkpoint {ckpt} --prompt-file {text}",
        r"notes\.txt",
        "not a tuned prompt",
    ),
    case(
        "demo-output-is-a-file",
        "demo --frames 3 --checkpoint {ckpt} -o {out}/notes.txt",
        r"notes\.txt",
        r"not a folder|exists",
    ),
    # info
    case("info-checkpoint-text", "info --checkpoint {text}", r"notes\.txt", "text"),
    case("info-checkpoint-png", "info --checkpoint {png}", r"image\.png", "PNG"),
    case(
        "info-checkpoint-truncated-safetensors",
        "info --checkpoint {cut_st}",
        r"cut_small\.safetensors",
        "truncated",
    ),
    case(
        "info-checkpoint-truncated-pth",
        "info --checkpoint {cut_pth}",
        r"cut_small\.pth",
        "truncated",
    ),
    case(
        "info-checkpoint-missing", "info --checkpoint {out}/nosuch.pth", r"nosuch\.pth", "no such"
    ),
    case(
        "info-checkpoint-folder-without-weights",
        "info --checkpoint {empty_dir}",
        r"empty",
        r"model\.safetensors",
    ),
    case(
        "info-checkpoint-broken-config-json",
        "info --checkpoint {hf_broken}",
        r"config\.json",
        "JSON",
    ),
    case(
        "info-checkpoint-other-network",
        "info --checkpoint {other_net}",
        r"other\.safetensors",
        "not SegGPT",
    ),
    case(
        "info-checkpoint-empty-file",
        "info --checkpoint {empty_weights}",
        r"empty\.safetensors",
        "empty file",
    ),
    case(
        "info-checkpoint-pth-without-model",
        "info --checkpoint {optimizer_pth}",
        r"optimizer\.pth",
        "no state dict",
    ),
    case(
        "info-checkpoint-pickle-with-objects",
        "info --checkpoint {pickled_pth}",
        r"pickled\.pth",
        "Python objects",
    ),
    case("info-model-unknown", "info --model nosuch", r"nosuch", "unknown model"),
    case(
        "info-model-not-cached-offline",
        "info --model seggpt-vit-large",
        r"seggpt-vit-large",
        "not cached",
    ),
    case("info-dtype-bogus", "info --checkpoint {ckpt} --dtype bogus", r"--dtype", "bogus"),
    # the published model, named but not downloaded: no command but `download` fetches it
    case(
        "run-model-not-downloaded",
        "run {video} --mask {mask} --model seggpt-vit-large -o {out}/r",
        r"^error: seggpt-vit-large: ",
        r"`seggpt-video download seggpt-vit-large`",
    ),
    case(
        "demo-model-not-downloaded",
        DEMO + " --model seggpt-vit-large",
        r"seggpt-vit-large",
        r"`seggpt-video download seggpt-vit-large`",
    ),
    # download
    case("download-model-unknown", "download nosuch", r"nosuch", "unknown model"),
    case(
        "download-to-a-file",
        "download seggpt-vit-large --to {out}/notes.txt",
        r"notes\.txt",
        "not a folder",
    ),
    case(
        "download-offline",
        "download seggpt-vit-large --to {out}/weights",
        r"seggpt-vit-large",
        r"HF_HUB_OFFLINE",
    ),
    # train
    case("train-davis-not-davis", TRAIN + " --davis {empty_dir}", r"empty", "DAVIS"),
    case("train-init-text", TRAIN + " --init {text}", r"notes\.txt", "text"),
    case("train-preset-nosuch", "train --preset nosuch -o {out}/result", r"--preset", "nosuch"),
    case(
        "train-output-is-a-file",
        "train --steps 1 -o {out}/notes.txt",
        r"notes\.txt",
        r"not a folder|exists",
    ),
    # tune (--steps 1: a case that wrongly starts tuning ends soon)
    case(
        "tune-masks-folder-empty",
        TUNE.format(masks="{empty_dir}", to="p", weights="{ckpt}"),
        r"empty",
        "mask",
    ),
    case(
        "tune-mask-text",
        TUNE.format(masks="{text}", to="p", weights="{ckpt}"),
        r"notes\.txt",
        "text",
    ),
    case(
        "tune-checkpoint-png",
        TUNE.format(masks="{mask}", to="p", weights="{png}"),
        r"image\.png",
        "PNG",
    ),
    case(
        "tune-output-not-safetensors",
        "tune {video} {mask} --checkpoint {ckpt} --steps 1 -o {out}/p.txt",
        r"p\.txt",
        "safetensors",
    ),
    case(
        "tune-output-is-a-folder",
        TUNE.format(masks="{mask}", to="locked", weights="{ckpt}"),
        r"locked\.safetensors",
        "folder",
    ),
    case(
        "tune-video-missing",
        "tune {out}/nosuch.mp4 {mask} --checkpoint {ckpt} --steps 1 -o {out}/p.safetensors",
        r"nosuch\.mp4",
        "no such",
    ),
    case(
        "tune-video-text",
        "tune {text} {mask} --checkpoint {ckpt} --steps 1 -o {out}/p.safetensors",
        r"notes\.txt",
        "video",
    ),
]


def make_inputs(folder: Path) -> dict[str, str]:
    """The shared input files of the cases, by placeholder name."""
    folder.mkdir(parents=True, exist_ok=True)
    frames, labels = moving_shapes(FRAMES, HEIGHT, WIDTH, num_objects=2, seed=3)
    paths = {
        "video": make_video(folder / "clip.mp4", frames, fps=25),
        "mask": folder / "first.png",
        "ckpt": folder / "small.safetensors",
        "text": folder / "notes.txt",
        "png": folder / "image.png",
        "small_mask": folder / "small.png",
        "black_mask": folder / "black.png",
        "ramp16": folder / "ramp16.png",
        "empty_dir": folder / "empty",
        "hf_broken": folder / "hf",
        "other_net": folder / "other.safetensors",
        "cut_pth": folder / "cut_small.pth",
    }
    write_palette_png(paths["mask"], labels[0])
    paths["cut_mask"] = cut_file(paths["mask"], 0.5)
    write_palette_png(paths["small_mask"], labels[0][: HEIGHT // 2, : WIDTH // 2])
    write_palette_png(paths["black_mask"], np.zeros((HEIGHT, WIDTH), np.uint8))
    ramp = np.arange(HEIGHT * WIDTH, dtype=np.uint16).reshape(HEIGHT, WIDTH)
    Image.fromarray(ramp).save(paths["ramp16"])
    paths["text"].write_text("meeting notes\n")
    Image.fromarray(frames[0]).save(paths["png"])
    paths["empty_dir"].mkdir()
    model = build_model("test-small")
    save_checkpoint(model, paths["ckpt"])
    paths["cut_st"] = cut_file(paths["ckpt"], 0.5)
    whole_pth = folder / "small.pth"
    torch.save(model.state_dict(), whole_pth)
    cut_file(whole_pth, 0.5, paths["cut_pth"])
    paths["cut_mp4"] = cut_file(paths["video"], 0.5)
    paths["hf_broken"].mkdir()
    (paths["hf_broken"] / "model.safetensors").write_bytes(paths["ckpt"].read_bytes())
    (paths["hf_broken"] / "config.json").write_text('{"hidden_size": 32,')
    save_file({"conv.weight": torch.zeros(4, 3, 3, 3)}, str(paths["other_net"]))
    paths["davis"] = make_davis(folder / "DAVIS")
    paths["preds"] = write_predictions(folder / "preds", ground_truth)
    paths["davis_ghost"] = make_davis(folder / "DAVIS-ghost")
    (paths["davis_ghost"] / "ImageSets" / "2017" / "val.txt").write_text("alpha\nghost\nbeta\n")
    paths["davis_corrupt"] = make_davis(folder / "DAVIS-corrupt")
    broken = paths["davis_corrupt"] / "Annotations" / "480p" / "alpha" / "00001.png"
    cut_file(broken, 0.4, broken)
    paths["youtube_broken"] = folder / "YouTube-VOS"
    paths["youtube_broken"].mkdir()
    (paths["youtube_broken"] / "meta.json").write_text('{"videos": {"v": {"objects": [1]}}}')
    paths["empty_weights"] = folder / "empty.safetensors"
    paths["empty_weights"].write_bytes(b"")
    paths["optimizer_pth"] = folder / "optimizer.pth"
    torch.save({"optimizer": {"lr": torch.tensor(0.1)}}, paths["optimizer_pth"])
    paths["tiny_prompt"] = folder / "tiny_prompt.safetensors"
    images, masks = torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64)  # seggpt-tiny's size
    tiny = build_model("seggpt-tiny").config.to_dict()
    save_tuned_prompt(TunedPrompt(images, masks, [1], "seggpt-tiny", tiny), paths["tiny_prompt"])
    metadata = {"format": PROMPT_FORMAT, "model": "test-small", "config": "{}", "object_ids": "[1]"}
    paths["prompt_no_masks"] = folder / "prompt_no_masks.safetensors"
    save_file({"images": torch.zeros(1, 3, 32, 32)}, str(paths["prompt_no_masks"]), metadata)
    paths["prompt_3d"] = folder / "prompt_3d.safetensors"
    flat = {"images": torch.zeros(3, 32, 32), "masks": torch.zeros(3, 32, 32)}
    save_file(flat, str(paths["prompt_3d"]), metadata)
    paths["pickled_pth"] = folder / "pickled.pth"
    torch.save({"model": model.state_dict(), "args": Path("run")}, paths["pickled_pth"])
    return {name: str(path) for name, path in paths.items()}


def prepare_case_folder(folder: Path) -> None:
    """What an earlier run left: a file that must stay as it is, a text file, a locked folder."""
    folder.mkdir(parents=True)
    (folder / SENTINEL).write_text("masks of an earlier run\n")
    (folder / "notes.txt").write_text("meeting notes\n")
    (folder / "locked").mkdir()
    (folder / "locked" / SENTINEL).write_text("kept\n")
    (folder / "locked").chmod(0o555)
    (folder / "locked.safetensors").mkdir()


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder below ``folder``: relative path -> content hash (or 'folder')."""
    entries = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        entries[key] = "folder" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return entries


def command_line(item: Case, inputs: dict[str, str], out: Path) -> list[str]:
    """The case's argv with its placeholders filled in."""
    return [arg.format(**inputs, out=out) for arg in item.args]


def environment(root: Path) -> dict[str, str]:
    """Offline, with an empty hub cache and no local weights folder: no case downloads."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(root / "hf-home")}
    env.pop("SEGGPT_VIDEO_WEIGHTS", None)
    env.pop("HF_HUB_CACHE", None)
    return env


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, dict]:
    """Every case run once, in one forked batch: name -> code, stdout, stderr, folder snapshots."""
    root = tmp_path_factory.mktemp("bad-input")
    inputs = make_inputs(root / "inputs")
    inputs_before = snapshot(root / "inputs")
    planned = [item for item in CASES if not (item.root_can_write and os.geteuid() == 0)]
    plan = []
    for item in planned:
        out = root / "cases" / item.name
        prepare_case_folder(out)
        plan.append({**asdict(item), "argv": command_line(item, inputs, out), "cwd": str(out)})
    befores = {item.name: snapshot(root / "cases" / item.name) for item in planned}
    plan_file = root / "plan.json"
    plan_file.write_text(json.dumps(plan))
    driver = subprocess.run(
        [sys.executable, str(HERE), str(plan_file)],
        env=environment(root),
        capture_output=True,
        text=True,
        timeout=CASE_SECONDS * len(CASES),
    )
    assert driver.returncode == 0, driver.stderr
    results = json.loads(plan_file.with_suffix(".results.json").read_text())
    for item in planned:
        results[item.name]["before"] = befores[item.name]
        results[item.name]["after"] = snapshot(root / "cases" / item.name)
    assert snapshot(root / "inputs") == inputs_before, "a case changed the shared inputs"
    results["_root"] = str(root)
    results["_inputs"] = inputs
    return results


@pytest.mark.parametrize("item", CASES, ids=[item.name for item in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(item: Case, outcomes):
    if item.root_can_write and os.geteuid() == 0:
        pytest.skip("running as root: chmod 555 does not stop root from writing")
    result = outcomes[item.name]
    stderr = result["stderr"]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert result["code"] == 2, f"exit code {result['code']}; stderr:\n{stderr}"
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    for pattern in item.says:
        assert re.search(pattern, lines[0], re.IGNORECASE), f"{pattern!r} not in: {lines[0]}"
    before, after = result["before"], result["after"]
    changed = sorted(key for key in before if after.get(key) != before[key])
    written = sorted(key for key, kind in after.items() if key not in before and kind != "folder")
    assert not changed, f"changed or removed what was there before: {changed}"
    assert not written, f"wrote files: {written}"


def test_there_are_at_least_30_distinct_cases():
    assert len({item.name for item in CASES}) == len(CASES) >= 30
    assert len({item.args for item in CASES}) == len(CASES)


@pytest.mark.parametrize("name", ["info-checkpoint-text", "run-mask-frame-not-a-number"])
def test_forked_case_equals_a_fresh_interpreter(name: str, outcomes):
    """The same command in its own ``python -m seggpt_video.cli`` gives the same code and stderr."""
    item = next(item for item in CASES if item.name == name)
    root = Path(outcomes["_root"])
    out = root / "fresh" / name
    prepare_case_folder(out)
    fresh = subprocess.run(
        [sys.executable, "-m", "seggpt_video.cli", *command_line(item, outcomes["_inputs"], out)],
        cwd=out,
        env=environment(root),
        capture_output=True,
        text=True,
        timeout=CASE_SECONDS,
    )
    forked = outcomes[name]
    normalise = str(root / "cases" / name), str(out)
    assert fresh.returncode == forked["code"]
    assert fresh.stderr == forked["stderr"].replace(*normalise)


# The driver: `python tests/test_bad_input.py PLAN.json` runs each planned case in a child.


def _run_child(case: dict, log_dir: Path) -> None:
    """In the forked child: become ``python -m seggpt_video.cli ARGS``; never returns."""
    import runpy
    import traceback

    code = 1
    try:
        os.chdir(case["cwd"])
        err = os.open(log_dir / f"{case['name']}.err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(err, 2)
        if case["tty"]:
            _, terminal = os.openpty()
            os.dup2(terminal, 1)
        else:
            out = os.open(log_dir / f"{case['name']}.out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(out, 1)
        sys.argv = ["seggpt-video", *case["argv"]]
        runpy.run_module("seggpt_video.cli", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit_:
        if exit_.code is None or isinstance(exit_.code, int):
            code = exit_.code or 0
        else:  # as the interpreter does: the message on stderr, code 1
            print(exit_.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def _wait(pid: int, seconds: float) -> int | None:
    """The child's exit code, or None after killing it when it overran ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return None


def _drive(plan_file: Path) -> None:
    """Import the CLI once, then fork a child per case and collect its code, stdout and stderr."""
    import seggpt_video.cli.app  # noqa: F401  (what every child would import first)

    plan = json.loads(plan_file.read_text())
    log_dir = plan_file.parent / "logs"
    log_dir.mkdir(exist_ok=True)
    results = {}
    for case in plan:
        sys.stdout.flush()
        began = time.monotonic()
        pid = os.fork()
        if pid == 0:
            _run_child(case, log_dir)
        code = _wait(pid, CASE_SECONDS)
        out_file = log_dir / f"{case['name']}.out"
        results[case["name"]] = {
            "code": code,
            "seconds": round(time.monotonic() - began, 2),
            "stdout": out_file.read_text(errors="replace") if out_file.exists() else "",
            "stderr": (log_dir / f"{case['name']}.err").read_text(errors="replace"),
        }
    plan_file.with_suffix(".results.json").write_text(json.dumps(results))


if __name__ == "__main__":
    _drive(Path(sys.argv[1]))
