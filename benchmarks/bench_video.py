"""End-to-end `run` speed on a real clip: frames per second and where the time goes.

    python benchmarks/bench_video.py            # DAVIS 2016 val 'blackswan', the tiny model
    python benchmarks/bench_video.py --video /work/shared/data/videos/bikes.mp4 --dtype bf16
    python benchmarks/bench_video.py --preset seggpt-vit-large --frames 4 --dtype bf16

The clip goes through seggpt_video.pipeline.segment_video exactly as `seggpt-video run` does
(reader thread, engine, writer thread; outputs --formats into a temporary folder). The first
frame's mask is the DAVIS ground truth, or for a video file a centred rectangle. Stages:
decode (reader thread, overlaps the rest), preprocess (resizing and normalising frames and
prompt masks), model (SegGPTPredictor.paint_each), postprocess (the rest of the engine: resizing the
painted masks to frame size, decoding colours to ids, prompt memory), write (writer thread,
overlaps). Also the mean IoU with the ground truth for DAVIS, so speed is seen beside accuracy.
Prints a table and writes benchmarks/results/bench_video.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, print_table, write_json  # noqa: E402

from seggpt_video.crops import CROP_MODES  # noqa: E402
from seggpt_video.engine import Segmenter, SegmenterOptions, default_memory  # noqa: E402
from seggpt_video.errors import UserError  # noqa: E402
from seggpt_video.io.video import open_video  # noqa: E402
from seggpt_video.io.writers import make_writers  # noqa: E402
from seggpt_video.model import build_model  # noqa: E402
from seggpt_video.pipeline import segment_video  # noqa: E402
from seggpt_video.predictor import SegGPTPredictor, load_predictor  # noqa: E402
from seggpt_video.runtime import resolve_dtype, tune_cpu_runtime  # noqa: E402

DAVIS = Path("/work/shared/data/davis2016-val")


class StageClock:
    """Wraps predictor methods to add up the seconds spent in each stage."""

    def __init__(self, predictor: SegGPTPredictor) -> None:
        self.seconds = {"preprocess": 0.0, "model": 0.0}
        for name, stage in (
            ("prepare_images", "preprocess"),
            ("prepare_masks", "preprocess"),
            ("paint_each", "model"),
        ):
            setattr(predictor, name, self._timed(getattr(predictor, name), stage))

    def _timed(self, method, stage: str):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - start

        return wrapper


def clip_frames(args: argparse.Namespace, scratch: Path) -> tuple[Path, np.ndarray, Path | None]:
    """The clip to segment (first --frames frames), frame 0's object ids, ground-truth folder."""
    if args.video is not None:
        with open_video(args.video) as video:
            frame = video.get_frame(0)
        labels = np.zeros(frame.shape[:2], dtype=np.uint8)
        height, width = labels.shape
        labels[height // 3 : 2 * height // 3, width // 3 : 2 * width // 3] = 1
        if args.frames is None:
            return args.video, labels, None
        folder = scratch / "frames"
        folder.mkdir()
        with open_video(args.video) as video:
            for index, frame in video.iter_frames():
                if index >= args.frames:
                    break
                Image.fromarray(frame).save(folder / f"{index:05d}.png")
        return folder, labels, None
    images = DAVIS / "JPEGImages/480p" / args.sequence
    truth = DAVIS / "Annotations/480p" / args.sequence
    folder = scratch / args.sequence
    folder.mkdir()
    for path in sorted(images.glob("*.jpg"))[: args.frames]:
        (folder / path.name).symlink_to(path)
    labels = (np.array(Image.open(truth / "00000.png")) > 0).astype(np.uint8)
    return folder, labels, truth


def make_predictor(args: argparse.Namespace) -> tuple[SegGPTPredictor, str]:
    """The trained model when its weights exist, else the preset with random weights."""
    try:
        return load_predictor(model=args.preset, device=args.device, dtype=args.dtype), "trained"
    except UserError:
        tune_cpu_runtime()
        dtype = resolve_dtype(args.dtype, __import__("torch").device(args.device))
        return SegGPTPredictor(build_model(args.preset), args.device, dtype), "random"


def mean_iou(predictions: Path, truth: Path) -> float:
    scores = []
    for path in sorted(predictions.glob("*.png")):
        predicted = np.array(Image.open(path)) > 0
        actual = np.array(Image.open(truth / path.name)) > 0
        union = np.logical_or(predicted, actual).sum()
        scores.append(np.logical_and(predicted, actual).sum() / union if union else 1.0)
    return float(np.mean(scores[1:])) if len(scores) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequence", default="blackswan", help="DAVIS 2016 val sequence")
    parser.add_argument("--video", type=Path, default=None, help="a video file instead")
    parser.add_argument("--frames", type=int, default=None, help="only the first N frames")
    parser.add_argument("--preset", default="seggpt-tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--memory", type=int, default=None, help="default: run's, per model")
    parser.add_argument("--crops", choices=CROP_MODES, default="auto")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--formats", nargs="+", default=["davis"])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    predictor, weights = make_predictor(args)
    clock = StageClock(predictor)
    if args.memory is None:
        args.memory = default_memory(predictor.name)
    options = SegmenterOptions(memory=args.memory, batch_size=args.batch_size, crops=args.crops)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        source_path, labels, truth = clip_frames(args, scratch)
        with open_video(source_path) as source:
            info = source.info
            writers = make_writers(args.formats, scratch / "out", info, [1])
            report = segment_video(source, {0: labels}, Segmenter(predictor, options), writers)
        iou = None
        if truth is not None and "davis" in args.formats:
            iou = mean_iou(next((scratch / "out").rglob("00000.png")).parent, truth)
    seconds = dict(report.seconds)
    engine = seconds["model_and_pre_post"]
    seconds["preprocess"] = round(clock.seconds["preprocess"], 3)
    seconds["model"] = round(clock.seconds["model"], 3)
    seconds["postprocess"] = round(engine - clock.seconds["preprocess"] - clock.seconds["model"], 3)
    computed = report.frames - report.resumed
    row = {
        "clip": info.name,
        "frames": report.frames,
        "size": f"{info.width}x{info.height}",
        "model": f"{args.preset} ({weights} weights)",
        "dtype": str(predictor.dtype).removeprefix("torch."),
        "memory": args.memory,
        "crops": args.crops,
        "batch_size": args.batch_size,
        "frames_per_second": round(report.frames_per_second, 3),
        "mean_iou_vs_ground_truth": None if iou is None else round(iou, 4),
    }
    stages = [
        {
            "stage": name,
            "seconds": seconds[name],
            "ms_per_frame": round(1e3 * seconds[name] / computed, 2),
            "share_of_total": round(seconds[name] / seconds["total"], 3),
        }
        for name in ("decode", "preprocess", "model", "postprocess", "write", "total")
    ]
    print_table("End-to-end run", [row], list(row))
    print_table("Where the time goes (decode and write overlap the rest)", stages, list(stages[0]))
    result = {
        "command": " ".join(["python", *sys.argv]),
        "machine": machine(),
        "run": row,
        "stages": stages,
        "note": "decode and write run in their own threads, overlapping the other stages",
    }
    print("wrote", write_json("bench_video", result, args.json))


if __name__ == "__main__":
    main()
