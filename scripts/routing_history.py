"""When did the experts stop choosing? Routing of every x4 weights file the package shipped
(read from git history), on B100's clean LR images (whole images, as ``seemore explain``).

    python scripts/routing_history.py --images 30 --json campaign/results/routing-history.json

For each version: per layer, the share of images per expert rank, and the largest share
of any rank in layers 2-6.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
WEIGHTS = "src/seemore_sr/weights/seemore-tiny-x{s}.safetensors"


def main() -> None:
    import torch

    from seemore_sr import load_model
    from seemore_sr.analysis.explain import route_images, routing_counts
    from seemore_sr.data.images import read_image
    from seemore_sr.data.paired import find_pairs
    from seemore_sr.evaluation.evaluate import lr_for

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--images", type=int, default=30, help="the first N images of B100 (sorted by name)")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    torch.set_num_threads(1)
    path = WEIGHTS.format(s=a.scale)
    log = subprocess.run(["git", "log", "--reverse", "--format=%h %ad", "--date=short", "--", path], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split("\n")  # fmt: skip
    versions = [line.split() for line in log if line.strip()]
    bench = ROOT.parent / "shared" / "data" / "benchmark" / "B100"
    lrs = []
    for hr_path, lr_path in find_pairs(bench, a.scale, recursive=False)[: a.images]:
        hr = read_image(hr_path)
        hr = hr[: hr.shape[0] // a.scale * a.scale, : hr.shape[1] // a.scale * a.scale]
        lrs.append(lr_for(hr, a.scale, lr_path))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for commit, date in versions:
            blob = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT, capture_output=True, check=True).stdout
            f = Path(tmp) / f"{commit}.safetensors"
            f.write_bytes(blob)
            model = load_model(f)
            counts = routing_counts(model, route_images(model, lrs))
            share = (100 * counts / counts.sum(1, keepdims=True)).round(0).astype(int).tolist()
            deep = max(max(layer) for layer in share[1:])
            rows.append({"commit": commit, "date": date, "share_percent": share, "deep_max": deep})
            print(f"{commit} {date}: layers 2-6 largest share {deep}%; per layer (rank 2/4/8): {share}", flush=True)
    if a.json:
        a.json.write_text(json.dumps({"images": len(lrs), "scale": a.scale, "versions": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
