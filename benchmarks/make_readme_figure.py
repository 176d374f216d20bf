"""The README's picture: an overlay contact sheet of a real clip segmented by `seggpt-video run`.

    python benchmarks/make_readme_figure.py /work/shared/data/davis2016-val \\
        [--sequence blackswan] [--output docs/images/blackswan-overlay.png]

Segments one DAVIS sequence (its 480p JPEG frames) from its first-frame ground-truth mask with
`seggpt-video run` and the model's defaults (the packaged seggpt-tiny unless other weights are
on the machine), then draws the predicted masks over --frames evenly spaced frames with the
overlay writer's own drawing (`seggpt_video.io.writers.draw_overlay`), each scaled to --width
pixels, in a grid of --columns. The first tile is frame 0, whose mask was given; every other
tile is the model's prediction. The PNG is reduced to 256 colours to stay small.

DAVIS 2016 (Perazzi et al., CVPR 2016): annotations CC BY 4.0, the videos belong to their owners.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from seggpt_video.io.masks import read_mask
from seggpt_video.io.writers import draw_overlay

REPO = Path(__file__).resolve().parent.parent


def segment(frames: Path, mask: Path, output: Path) -> None:
    """Run `seggpt-video run` on a frame folder, DAVIS masks only, into `output`."""
    command = shutil.which("seggpt-video")
    launcher = [command] if command else [sys.executable, "-m", "seggpt_video.cli"]
    arguments = ["run", str(frames), "--mask", str(mask), "-o", str(output), "-f", "davis"]
    print("$ seggpt-video " + " ".join(arguments), flush=True)
    subprocess.run(launcher + arguments, check=True)


def tile(frame: np.ndarray, labels: np.ndarray, width: int, caption: str) -> Image.Image:
    """One frame with its masks drawn over it, scaled to `width` pixels, captioned top left.

    frame: (H, W, 3) uint8 RGB; labels: (H, W) uint8 object ids.
    """
    image = Image.fromarray(draw_overlay(frame, labels))
    height = round(image.height * width / image.width)
    image = image.resize((width, height), Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(image)
    box = draw.textbbox((6, 4), caption)
    draw.rectangle((box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2), fill=(0, 0, 0))
    draw.text((6, 4), caption, fill=(255, 255, 255))
    return image


def contact_sheet(
    frames: Path, masks: Path, count: int, columns: int, width: int, given: set[int]
) -> Image.Image:
    """`count` evenly spaced frames of a sequence with their masks, in a grid of `columns`."""
    names = sorted(path.stem for path in frames.glob("*.jpg"))
    picks = np.linspace(0, len(names) - 1, count).round().astype(int)
    tiles = []
    for index in picks:
        frame = np.asarray(Image.open(frames / f"{names[index]}.jpg").convert("RGB"))
        labels = read_mask(masks / f"{names[index]}.png")
        caption = f"frame {index}" + (" (mask given)" if index in given else "")
        tiles.append(tile(frame, labels, width, caption))
    rows = -(-count // columns)
    sheet = Image.new("RGB", (columns * width, rows * tiles[0].height), (255, 255, 255))
    for position, image in enumerate(tiles):
        sheet.paste(image, ((position % columns) * width, (position // columns) * image.height))
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("davis", type=Path, help="DAVIS-layout folder (JPEGImages, Annotations)")
    parser.add_argument("--sequence", default="blackswan")
    parser.add_argument("--resolution", default="480p")
    parser.add_argument("--frames", type=int, default=6, help="tiles in the sheet")
    parser.add_argument("--columns", type=int, default=3)
    parser.add_argument("--width", type=int, default=320, help="pixels per tile")
    parser.add_argument("--output", type=Path, default=REPO / "docs/images/blackswan-overlay.png")
    args = parser.parse_args()

    frames = args.davis / "JPEGImages" / args.resolution / args.sequence
    mask = args.davis / "Annotations" / args.resolution / args.sequence / "00000.png"
    for path in (frames, mask):
        if not path.exists():
            sys.exit(f"{path}: not found (expected a DAVIS-layout folder)")
    with tempfile.TemporaryDirectory() as scratch:
        segment(frames, mask, Path(scratch))
        masks = Path(scratch) / args.sequence
        sheet = contact_sheet(frames, masks, args.frames, args.columns, args.width, given={0})
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(256, dither=Image.Dither.NONE).save(args.output, optimize=True)
    print(f"{args.output}: {sheet.width}x{sheet.height}, {args.output.stat().st_size / 1e3:.0f} KB")


if __name__ == "__main__":
    main()
