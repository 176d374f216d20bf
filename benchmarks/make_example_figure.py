"""The docs' picture of an example from outside the video: an image, its mask, and frames of
another clip segmented from that example alone (no mask of the clip), through the Python API.

    python benchmarks/make_example_figure.py /work/shared/data/davis2016-val \\
        --example-sequence car-shadow --sequence car-roundabout \\
        --output docs/images/example-from-another-clip.png

The first two tiles are the example (the other sequence's first frame and its ground truth);
the others are the clip's frames with the masks the model found, drawn by the overlay writer's
own drawing. DAVIS 2016 (Perazzi et al., CVPR 2016): annotations CC BY 4.0, the videos belong
to their owners.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from make_readme_figure import tile
from PIL import Image

import seggpt_video
from seggpt_video.io.masks import DAVIS_PALETTE, read_mask
from seggpt_video.io.video import read_image

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("davis", type=Path, help="DAVIS 2016 val folder (480p)")
    parser.add_argument("--example-sequence", default="car-shadow")
    parser.add_argument("--sequence", default="car-roundabout")
    parser.add_argument("--frames", type=int, default=4, help="frames of the clip shown")
    parser.add_argument("--width", type=int, default=256, help="pixels per tile")
    parser.add_argument(
        "--output", type=Path, default=REPO / "docs" / "images" / "example-from-another-clip.png"
    )
    args = parser.parse_args()

    images = args.davis / "JPEGImages" / "480p"
    truth = args.davis / "Annotations" / "480p"
    example_image = read_image(images / args.example_sequence / "00000.jpg")
    example_mask = read_mask(truth / args.example_sequence / "00000.png")
    clip = images / args.sequence
    count = len(list(clip.glob("*.jpg")))
    shown = {round(i * (count - 1) / (args.frames - 1)) for i in range(args.frames)}

    segmenter = seggpt_video.load()
    tiles = [
        tile(example_image, np.zeros_like(example_mask), args.width, "example image"),
        tile(DAVIS_PALETTE[example_mask], np.zeros_like(example_mask), args.width, "its mask"),
    ]
    for frame in segmenter.segment(clip, examples=[(example_image, example_mask)]):
        if frame.index in shown:
            tiles.append(tile(frame.image, frame.labels, args.width, f"frame {frame.index}"))
    height = max(t.height for t in tiles)
    sheet = Image.new("RGB", (args.width * len(tiles), height), (255, 255, 255))
    for position, image in enumerate(tiles):
        sheet.paste(image, (position * args.width, 0))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(256).save(args.output, optimize=True)
    print(f"written {args.output} ({args.output.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
