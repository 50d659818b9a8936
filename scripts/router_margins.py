"""What the routers see: per layer, the softmax probabilities of the experts over a set of
images (mean, and their spread across images). A router whose probabilities barely move
from image to image sends every image to the same expert: the decision is made by the
layer, not by the image.

    python scripts/router_margins.py seemore-tiny-x4 --data ../shared/data/train-more/Kodak24
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    import numpy as np
    import torch

    from seemore_sr import load_model
    from seemore_sr.data.images import list_images, read_image
    from seemore_sr.data.imresize import imresize
    from seemore_sr.models.seemore import Router

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+")
    p.add_argument("--data", type=Path, required=True, help="a folder of HR images (made LR by MATLAB bicubic)")
    p.add_argument("--images", type=int, default=24)
    a = p.parse_args()
    torch.set_num_threads(1)
    for name in a.models:
        model = load_model(name)
        s = model.config.scale
        probs: list[list[np.ndarray]] = []

        def record(_m, _i, out, probs=probs):
            probs[-1].append(torch.softmax(out.float(), 1)[0].numpy())

        hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, Router)]
        with torch.no_grad():
            for f in list_images(a.data)[: a.images]:
                hr = read_image(f)
                hr = hr[: hr.shape[0] // s * s, : hr.shape[1] // s * s]
                x = torch.from_numpy(imresize(hr, 1 / s)).permute(2, 0, 1)[None].float() / 255
                probs.append([])
                model(x)
        for h in hooks:
            h.remove()
        arr = np.array(probs)  # images, layers, experts
        print(f"{name} on {len(arr)} images of {a.data.name}: per layer, mean probability % (spread across images)")
        for layer in range(arr.shape[1]):
            mean, spread = arr[:, layer].mean(0) * 100, arr[:, layer].std(0) * 100
            chosen = np.bincount(arr[:, layer].argmax(1), minlength=arr.shape[2]) * 100 // len(arr)
            cells = " / ".join(f"{m:.0f} (+-{d:.1f})" for m, d in zip(mean, spread, strict=True))
            print(f"  layer {layer + 1}: {cells}; images chosen per expert % {chosen.tolist()}")


if __name__ == "__main__":
    main()
