"""The studio's measurements (issue 23), printed as a table and JSON.

(a) A 1080p, 1000-frame clip (generated once into /tmp): time from starting `seggpt-video studio`
    to its URL and to the first frame JPEG served; the page's time to show frame 0 in headless
    Chromium; the server's RSS while 200 random frames are fetched (start, max, end).
(b) Propagation on a 480p, 60-frame clip with seggpt-tiny fp32 on CPU: `write` (what
    `seggpt-video run` calls) against the studio's propagate button clicked in Chromium with
    the page following the run (same segmenter, same settings), frames/s and ratio.

    OMP_NUM_THREADS=1 python benchmarks/bench_studio.py [--rounds 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from synthetic_media import make_video, moving_shapes  # noqa: E402
from test_studio_browser import Page, chrome, serve  # noqa: E402

import seggpt_video  # noqa: E402
from seggpt_video.runtime import detect_cpu_features  # noqa: E402
from seggpt_video.studio.project import BASE_FORMATS  # noqa: E402
from seggpt_video.studio.server import StudioConfig  # noqa: E402

BIG = Path("/tmp/seggpt-studio-bench-1080p-1000.mp4")
MODEL = ["--model", "seggpt-tiny", "--device", "cpu", "--dtype", "fp32"]


def cpu_features() -> str:
    """The features every speed figure names, as the runtime detects them."""
    named = {"amx_bf16", "avx512_bf16", "avx512f", "avx2"}
    found = detect_cpu_features().flags & named
    return " ".join(sorted(found)) or "none of " + " ".join(sorted(named))


def make_big_clip(path: Path, frames: int = 1000, width: int = 1920, height: int = 1080) -> Path:
    """A 1080p H.264 clip of a moving square over a moving gradient, encoded frame by frame."""
    if path.exists():
        return path
    partial = path.with_suffix(".partial.mp4")
    with av.open(str(partial), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": "50"}
        xs = np.arange(width, dtype=np.uint16)
        for index in range(frames):
            image = np.empty((height, width, 3), np.uint8)
            image[..., 0] = ((xs + index * 4) % 256).astype(np.uint8)
            image[..., 1] = 90
            image[..., 2] = (np.arange(height)[:, None] * 255 // height).astype(np.uint8)
            x = (index * 7) % (width - 300)
            image[400:700, x : x + 300] = (230, 60, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    partial.rename(path)
    return path


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def measure_big(clip: Path, scrubs: int, settle: float = 0, seed: int = 0) -> dict:
    """Start the real command; time to URL and first JPEG; RSS over `scrubs` random frames."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    driver = chrome()  # started first: its own start is not the studio's
    with tempfile.TemporaryDirectory() as out:
        argv = [sys.executable, "-m", "seggpt_video.cli", "studio", str(clip), "-o", out,
                "--no-browser", *MODEL]  # fmt: skip
        began = time.perf_counter()
        server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True, env=env)  # fmt: skip
        try:
            url = server.stdout.readline().strip()
            to_url = time.perf_counter() - began
            base, token = url.split("/?token=")
            with httpx.Client(base_url=base, headers={"X-Studio-Token": token}, timeout=60) as web:
                first = web.get("/api/frames/0.jpg", params={"width": 960})
                first.raise_for_status()
                to_jpeg = time.perf_counter() - began
                shown = time.perf_counter()
                Page(driver, url)  # waits until frame 0 is drawn on the canvas
                page_seconds = time.perf_counter() - shown
                for _ in range(600):  # the frames counted, so that every index is valid
                    session = web.get("/api/session").json()
                    if session["video"]["ready"]:
                        break
                    time.sleep(0.1)
                count = session["video"]["num_frames"]
                time.sleep(settle)  # the model's background load done before the first sample
                rng = random.Random(seed)
                start = rss_mb(server.pid)
                samples, took = [start], []
                for _ in range(scrubs):
                    t = time.perf_counter()
                    web.get(f"/api/frames/{rng.randrange(count)}.jpg", params={"width": 960})
                    took.append(time.perf_counter() - t)
                    samples.append(rss_mb(server.pid))
        finally:
            driver.quit()
            server.terminate()
            server.wait(timeout=30)
    return {
        "clip": f"{clip.name}: 1920x1080, {count} frames",
        "seconds_to_url": round(to_url, 2),
        "seconds_to_first_jpeg": round(to_jpeg, 2),
        "seconds_page_shows_frame_0": round(page_seconds, 2),
        "scrub_frames": scrubs,
        "scrub_ms_median": round(1000 * float(np.median(took)), 1),
        "rss_mb_start": round(start, 1),
        "rss_mb_max": round(max(samples), 1),
        "rss_mb_end": round(samples[-1], 1),
    }


def measure_propagation(rounds: int, frames_count: int = 60) -> dict:
    """write() (run's call) against the page's propagate button, the same segmenter."""
    import torch

    torch.set_num_threads(1)
    frames, labels = moving_shapes(frames_count, 480, 854, num_objects=2, seed=5)
    work = Path(tempfile.mkdtemp(prefix="bench-studio-"))
    clip = make_video(work / "clip480.mp4", frames, fps=25)
    from test_studio_api import palette_png

    mask = work / "mask.png"
    mask.write_bytes(palette_png(labels[0]))
    segmenter = seggpt_video.load("seggpt-tiny", device="cpu", dtype="fp32")
    segmenter.write(clip, work / "warm", masks={0: mask}, formats=["davis"])  # warm-up
    run_times, studio_times = [], []
    driver = chrome()
    try:
        for round_number in range(rounds):
            began = time.perf_counter()
            # the formats every studio propagation writes, so that both write the same files
            segmenter.write(
                clip, work / f"run{round_number}", masks={0: mask}, formats=BASE_FORMATS
            )
            run_times.append(time.perf_counter() - began)

            out = work / f"studio{round_number}"
            config = StudioConfig(video=clip, out=out, segmenter=segmenter,
                                  model_options=MODEL[2:], warm_up=False)  # fmt: skip
            with serve(config) as url:
                page = Page(driver, url)
                base, token = url.split("/?token=")
                headers = {"X-Studio-Token": token}
                put = httpx.put(f"{base}/api/annotations/0.png", content=mask.read_bytes(),
                                headers=headers)  # fmt: skip
                put.raise_for_status()
                driver.refresh()
                page = Page(driver, url)
                began = time.perf_counter()
                page.run("propagate", "propagation")
                studio_times.append(time.perf_counter() - began)
                same = all(
                    (out / "results/clip" / p.name).read_bytes() == p.read_bytes()
                    for p in (work / f"run{round_number}/clip").glob("*.png")
                )
                assert same, "the studio's labels differ from write()'s"
    finally:
        driver.quit()
    run_fps = frames_count / min(run_times)
    studio_fps = frames_count / min(studio_times)
    return {
        "clip": f"854x480, {frames_count} frames, 2 objects; seggpt-tiny fp32 cpu, 1 thread",
        "rounds": rounds,
        "run_seconds": [round(t, 2) for t in run_times],
        "studio_seconds": [round(t, 2) for t in studio_times],
        "run_fps": round(run_fps, 2),
        "studio_fps": round(studio_fps, 2),
        "studio_cost": round(min(studio_times) / min(run_times) - 1, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--scrubs", type=int, default=200)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--skip-propagation", action="store_true")
    parser.add_argument("--settle", type=float, default=0, help="seconds to wait before scrubbing")
    args = parser.parse_args()
    result = {"cpu_features": cpu_features(), "threads": os.environ.get("OMP_NUM_THREADS")}
    if not args.skip_big:
        began = time.perf_counter()
        make_big_clip(BIG)
        print(f"clip {BIG} ready in {time.perf_counter() - began:.1f} s", flush=True)
        result["big"] = measure_big(BIG, args.scrubs, args.settle)
    if not args.skip_propagation:
        result["propagation"] = measure_propagation(args.rounds)
    print(f"CPU features: {result['cpu_features']}; OMP_NUM_THREADS={result['threads']}")
    print(f"{'measure':<34} value")
    for section in ("big", "propagation"):
        for key, value in result.get(section, {}).items():
            print(f"{section + '.' + key:<34} {value}")
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
