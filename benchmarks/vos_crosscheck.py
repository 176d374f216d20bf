"""Score a `seggpt-video eval` output folder with vos-benchmark too, and show both side by side.

    python benchmarks/vos_crosscheck.py --data ../shared/data/davis2016-val --predictions OUT

vos-benchmark (the evaluator Cutie and XMem use) compares object ids exactly and reads every
folder beside the sequences as one, so it cannot read our output folder as it is: DAVIS 2016's
ground truth marks its one object 255 where our masks say 1, and OUT holds `.eval-cache`. The
sequences' masks are copied to a scratch folder as 0/255 (any object: 255, as DAVIS 2016 ships
them) and scored there with 2 processes; ours are read from OUT/global_results-val.csv (J&F, J
and F means).
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def as_davis2016(predictions: Path, sequences: list[str], target: Path) -> None:
    """Each sequence's masks as 8-bit 0/255 PNGs under target/<sequence>/."""
    for sequence in sequences:
        (target / sequence).mkdir(parents=True)
        for png in sorted((predictions / sequence).glob("*.png")):
            with Image.open(png) as image:
                ids = np.array(image)
            Image.fromarray(np.where(ids > 0, 255, 0).astype(np.uint8)).save(
                target / sequence / png.name
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="DAVIS 2016 in DAVIS layout")
    parser.add_argument("--predictions", type=Path, required=True, help="`eval -o` folder")
    parser.add_argument("--resolution", default="480p")
    args = parser.parse_args()
    from vos_benchmark.benchmark import benchmark

    gt_root = args.data / "Annotations" / args.resolution
    sequences = sorted(p.name for p in gt_root.iterdir() if p.is_dir())
    missing = [s for s in sequences if not (args.predictions / s).is_dir()]
    if missing:
        sys.exit(f"{args.predictions}: no masks for {', '.join(missing)}")
    with tempfile.TemporaryDirectory() as scratch:
        as_davis2016(args.predictions, sequences, Path(scratch))
        jf, j, f, _ = benchmark([str(gt_root)], [scratch], num_processes=2, verbose=False)
    with (args.predictions / "global_results-val.csv").open() as handle:
        ours = next(csv.DictReader(handle))
    print(f"{'':14}{'J&F':>8}{'J':>8}{'F':>8}")
    print(f"{'vos-benchmark':14}{jf[0] / 100:8.3f}{j[0] / 100:8.3f}{f[0] / 100:8.3f}")
    values = [float(ours[k]) for k in ("J&F-Mean", "J-Mean", "F-Mean")]
    print(f"{'seggpt-video':14}" + "".join(f"{v:8.3f}" for v in values))


if __name__ == "__main__":
    main()
