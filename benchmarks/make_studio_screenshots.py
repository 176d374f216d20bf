"""Screenshots of the studio for docs/studio.md, taken by the browser test's machinery.

Opens the studio (real server, headless Chromium) on a DAVIS 2016 sequence as a frame folder,
draws a box around the object on frame 0 (GrabCut), propagates, erases a correction on a later
frame where the propagation took part of the background, and saves three PNGs (quantized to stay
small) to docs/images/studio/.

    OMP_NUM_THREADS=1 python benchmarks/make_studio_screenshots.py \
        [--sequence ../shared/data/davis2016-val/JPEGImages/480p/blackswan] [--fix 15]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_studio_browser import Page, box_of, chrome, serve  # noqa: E402

import seggpt_video  # noqa: E402
from seggpt_video.io.masks import read_mask  # noqa: E402
from seggpt_video.studio.server import StudioConfig  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "davis2016-val"
IMAGES = ROOT / "docs" / "images" / "studio"


def save(page: Page, name: str, colours: int = 128) -> Path:
    """The browser window as a palette PNG of `colours` colours."""
    shot = Image.open(io.BytesIO(page.driver.get_screenshot_as_png())).convert("RGB")
    path = IMAGES / name
    shot.quantize(colours, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"{path.relative_to(ROOT)}: {shot.width}x{shot.height}, {path.stat().st_size} bytes")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequence", type=Path, default=DATA / "JPEGImages/480p/blackswan")
    parser.add_argument("--fix", type=int, default=15, help="frame to correct with the eraser")
    args = parser.parse_args()
    sequence = args.sequence
    truth_folder = Path(str(sequence).replace("JPEGImages", "Annotations"))
    if not sequence.is_dir():
        sys.exit(f"{sequence}: no such frame folder (see ../shared/data/README.md)")
    IMAGES.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(1)
    truth = read_mask(truth_folder / "00000.png") > 0
    segmenter = seggpt_video.load("seggpt-tiny", device="cpu", dtype="fp32", lazy=True)
    driver = chrome(1400, 820)
    try:
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "out"
            options = ["--model", "seggpt-tiny", "--device", "cpu", "--dtype", "fp32"]
            config = StudioConfig(video=sequence, out=out, segmenter=segmenter,
                                  model_options=options)  # fmt: skip
            with serve(config) as url:
                page = Page(driver, url)
                page.element("add-object").click()
                field = "#objects li input[type=text]"
                page.wait(lambda d: d.find_elements("css selector", field), "the new object")
                name = driver.find_element("css selector", field)
                name.clear()
                name.send_keys(sequence.name, "\n")
                x0, y0, x1, y1 = box_of(truth, margin=12)
                page.drag([(x0, y0), ((x0 + x1) / 2, (y0 + y1) / 2), (x1, y1)])
                page.wait(lambda d: page.text("frame-kind") == "annotated", "mask on frame 0")
                save(page, "first-mask.png")

                print(page.run("propagate", "propagation"))
                page.show(args.fix)
                save(page, "propagated.png")

                page.show(args.fix)
                result = read_mask(out / "results" / sequence.name / f"{args.fix:05d}.png") == 1
                wanted = read_mask(truth_folder / f"{args.fix:05d}.png") > 0
                page.element("tool-eraser").click()
                size = page.element("size")
                driver.execute_script(
                    "arguments[0].value = 48; arguments[0].dispatchEvent(new Event('input'));", size
                )
                wrong = result & ~wanted  # what the run took that is not the object
                rows = np.flatnonzero(wrong.sum(axis=1) > 20)
                if len(rows):  # a zigzag of the eraser over the wrong part, 40 px apart
                    points = []
                    for number, row in enumerate(rows[20:-20:40] if len(rows) > 60 else rows[:1]):
                        columns = np.flatnonzero(wrong[row])
                        ends = [columns.min(), columns.max()]
                        for x in ends if number % 2 == 0 else ends[::-1]:
                            points.append((float(x), float(row)))
                    page.drag(points)
                page.wait(lambda d: page.text("frame-kind") == "annotated", "the correction")
                print(page.run("propagate", "propagation after the correction"))
                page.show(args.fix)
                save(page, "correction.png")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
