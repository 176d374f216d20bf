"""Memory over a long video: resident memory sampled while `run`'s pipeline segments N frames.

    python benchmarks/bench_long_video.py --frames 10000

Makes a synthetic clip (moving shapes, H.264), segments it with the packaged small model (or a
--checkpoint) along `run`'s own path (seggpt_video.clip: settings, resume state, writers) with
davis + overlay + summary outputs, and prints resident memory every --every frames. Flat memory
means nothing grows with length. ``--generator``: the same frames from a Python generator
through the API's lazy ``segment()`` (nothing written), as a notebook would stream them.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from seggpt_video.clip import open_clip, segment_clip
from seggpt_video.engine import SegmentedFrame, Segmenter, SegmenterOptions
from seggpt_video.io.masks import write_palette_png
from seggpt_video.predictor import load_predictor

RESULTS = Path(__file__).parent / "results"


def resident_mb() -> float:
    """Current resident set size of this process in MB (Linux /proc)."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def gliding_square(frames: int, height: int, width: int):
    """A square gliding over a gradient: yields (frame (H, W, 3) uint8, its (H, W) ids)."""
    ys, xs = np.mgrid[0:height, 0:width]
    background = np.stack([xs * 255 // width, ys * 255 // height, np.full_like(xs, 90)], -1)
    for t in range(frames):
        image = background.astype(np.uint8)
        top = int(height / 3 + height / 4 * np.sin(t / 40))
        left = int(width / 3 + width / 4 * np.cos(t / 55))
        image[top : top + height // 4, left : left + width // 4] = (230, 40, 40)
        mask = np.zeros((height, width), np.uint8)
        mask[top : top + height // 4, left : left + width // 4] = 1
        yield image, mask


def write_clip(path: Path, frames: int, height: int, width: int) -> np.ndarray:
    """The gliding square as H.264 for `frames` frames; returns frame 0's mask."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18"}
        for t, (image, ids) in enumerate(gliding_square(frames, height, width)):
            if t == 0:
                mask = ids
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return mask


def stream_through_the_api(args: argparse.Namespace, height: int, width: int) -> None:
    """--generator: frames from a generator through ``segment()``; RSS every --every frames."""
    import seggpt_video

    segmenter = seggpt_video.load(
        checkpoint=args.checkpoint, device="cpu", dtype="fp32", memory=args.memory
    )
    first_mask = next(gliding_square(1, height, width))[1]
    frames = (image for image, _ in gliding_square(args.frames, height, width))
    samples: list[tuple[int, float]] = [(0, resident_mb())]
    began = time.perf_counter()
    count = 0
    for _ in segmenter.segment(frames, masks={0: first_mask}):
        count += 1
        if count % args.every == 0:
            samples.append((count, resident_mb()))
            print(f"frame {count:6d}  rss {samples[-1][1]:8.1f} MB", flush=True)
    elapsed = time.perf_counter() - began
    growth = samples[-1][1] - samples[1][1] if len(samples) > 2 else float("nan")
    result = {
        "path": "api segment() over a generator",
        "frames": count,
        "size": [height, width],
        "model": segmenter.model_name,
        "memory_prompts": args.memory,
        "frames_per_second": round(count / elapsed, 2),
        "rss_mb_by_frame": samples,
        "rss_growth_mb_after_first_sample": round(growth, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "long_video_generator.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rss_mb_by_frame"}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10000)
    parser.add_argument("--size", default="96x128", help="HxW of the synthetic clip")
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--memory", type=int, default=8)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--generator", action="store_true", help="stream through the API")
    args = parser.parse_args()
    height, width = map(int, args.size.split("x"))
    if args.generator:
        stream_through_the_api(args, height, width)
        return
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "long.mp4"
        mask = Path(tmp) / "long_mask.png"
        write_palette_png(mask, write_clip(clip, args.frames, height, width))
        predictor = load_predictor(checkpoint=args.checkpoint, device="cpu", dtype="fp32")
        segmenter = Segmenter(predictor, SegmenterOptions(memory=args.memory))
        samples: list[tuple[int, float]] = [(0, resident_mb())]
        began = time.perf_counter()

        def sample(frame: SegmentedFrame) -> None:
            if (frame.index + 1) % args.every == 0:
                samples.append((frame.index + 1, resident_mb()))
                print(f"frame {frame.index + 1:6d}  rss {samples[-1][1]:8.1f} MB", flush=True)

        with open_clip(clip, [str(mask)]) as opened:
            formats = ["davis", "overlay", "summary"]
            out = Path(tmp) / "out"
            report = segment_clip(opened, segmenter, out, formats, on_frame=sample)
        elapsed = time.perf_counter() - began
    growth = samples[-1][1] - samples[1][1] if len(samples) > 2 else float("nan")
    result = {
        "frames": report.frames,
        "size": [height, width],
        "model": predictor.name,
        "memory_prompts": args.memory,
        "seconds": round(elapsed, 1),
        "frames_per_second": round(report.frames / elapsed, 2),
        "rss_mb_by_frame": samples,
        "rss_growth_mb_after_first_sample": round(growth, 1),
        "stage_seconds": report.seconds,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "long_video.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rss_mb_by_frame"}, indent=1))


if __name__ == "__main__":
    main()
