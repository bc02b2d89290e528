"""What a multi-stage LUT bundle's first stage writes (docs/lut.md, "Stage 1 writes a compressed
image"): for each held-out photo (and a training one, ``brick``), the LR image (MATLAB-style
bicubic x1/r of the photo's Y) through the bundle's stage-1 tables with the numpy reference, and
the input's and output's range, standard deviation and number of distinct levels.

    .venv/bin/python benchmarks/lut_stage_range.py build/lut/mulut_x4
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from edgekit.data.bicubic import downscale, mod_crop
    from edgekit.data.photos import HELD_OUT, load_y
    from edgekit.kernels.lut_net import load_tables, run_stage
    spec, tables, fixed = load_tables(Path(sys.argv[1]) / "lut_tables.npz")
    if spec["stages"] < 2:
        raise SystemExit(f"{sys.argv[1]} has one stage: nothing to show")
    for name in (*HELD_OUT, "brick"):
        lr = downscale(mod_crop(load_y(name), spec["scale"]), spec["scale"])
        out = run_stage(lr.astype(np.int64), spec, tables, 0, fixed)
        print(f"{name:8s} in {lr.min():3d}-{lr.max():3d} std {lr.std():5.1f} levels {len(np.unique(lr)):3d} | "
              f"stage 1 {out.min():3d}-{out.max():3d} std {out.std():5.1f} levels {len(np.unique(out)):3d}")


if __name__ == "__main__":
    main()
