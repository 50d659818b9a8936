"""Markdown table of campaign/results/bundled-x{s}.json next to bicubic (ours) and the paper's SeemoRe-T.

    python scripts/results_table.py     # the README's weights table

"share" is the share of the paper's gain over bicubic that the shipped weights reach
(PSNR): (ours - bicubic) / (paper - bicubic).
"""

import json
from pathlib import Path

from seemore_sr.evaluation.evaluate import paper_numbers

RESULTS = Path(__file__).resolve().parents[1] / "campaign" / "results"


def rows(results: Path = RESULTS) -> list[str]:
    out = [
        "| scale | dataset | ours (PSNR / SSIM) | bicubic | paper SeemoRe-T | share of the paper's gain |",
        "|---|---|---|---|---|---|",
    ]
    for s in (2, 3, 4):
        ours, bic = (
            json.loads((results / f"bundled-x{s}.json").read_text()),
            json.loads((results / f"bicubic-x{s}.json").read_text()),
        )
        paper = paper_numbers("SeemoRe-T", s)
        for ds in ("Set5", "Set14", "B100"):
            o, b, p = ours[ds], bic[ds], paper[ds.lower()]
            share = (o["psnr"] - b["psnr"]) / (p["psnr"] - b["psnr"])
            out.append(
                f"| x{s} | {ds} | {o['psnr']:.2f} / {o['ssim']:.4f} | {b['psnr']:.2f} / {b['ssim']:.4f} | "
                f"{p['psnr']:.2f} / {p['ssim']:.4f} | {100 * share:.0f}% |"
            )
    return out


if __name__ == "__main__":
    print("\n".join(rows()))
