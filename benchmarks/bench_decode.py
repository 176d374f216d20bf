"""Decoding speed: decord against PyAV on real clips, frames per second of RGB arrays out.

    python benchmarks/bench_decode.py [--videos /work/shared/data/videos] [--repeats 3]

Each clip is opened once per backend (opening probes the file, not timed) and read through
`iter_frames` in full; backends are interleaved per repeat and the median is reported. Also
checks that both backends give the same frames (mean absolute difference of uint8 levels).
Prints a table and writes benchmarks/results/bench_decode.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, print_table, write_json  # noqa: E402

from seggpt_video.io.video import open_video  # noqa: E402

BACKENDS = ("decord", "pyav")


def decode_all(path: Path, backend: str) -> tuple[float, list[np.ndarray]]:
    """Seconds to read every frame, and a few frames to compare backends."""
    with open_video(path, backend=backend) as video:
        samples = []
        start = time.perf_counter()
        for index, frame in video.iter_frames():
            if index % 25 == 0:
                samples.append(frame.copy())
        return time.perf_counter() - start, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=Path, default=Path("/work/shared/data/videos"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    rows = []
    for path in sorted(args.videos.glob("*.mp4")):
        with open_video(path, backend="pyav") as video:
            info = video.info
        seconds = {backend: [] for backend in BACKENDS}
        samples = {}
        for _ in range(args.repeats):
            for backend in BACKENDS:
                elapsed, samples[backend] = decode_all(path, backend)
                seconds[backend].append(elapsed)
        difference = max(
            float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())
            for a, b in zip(samples["decord"], samples["pyav"], strict=True)
        )
        row = {
            "video": path.name,
            "size": f"{info.width}x{info.height}",
            "frames": info.num_frames,
            "mean_abs_level_difference": round(difference, 3),
        }
        for backend in BACKENDS:
            median = statistics.median(seconds[backend])
            row[f"{backend}_fps"] = round(info.num_frames / median, 1)
            row[f"{backend}_seconds"] = [round(s, 4) for s in seconds[backend]]
        row["decord_over_pyav"] = round(row["decord_fps"] / row["pyav_fps"], 2)
        rows.append(row)
    print_table(
        f"Decoding to RGB (median of {args.repeats})",
        rows,
        [
            "video",
            "size",
            "frames",
            "decord_fps",
            "pyav_fps",
            "decord_over_pyav",
            "mean_abs_level_difference",
        ],
    )
    result = {"command": " ".join(["python", *sys.argv]), "machine": machine(), "rows": rows}
    print("wrote", write_json("bench_decode", result, args.json))


if __name__ == "__main__":
    main()
