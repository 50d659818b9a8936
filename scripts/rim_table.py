"""Markdown table of the border rim and the PSNR change ``--mirror`` costs, for the README.

    python scripts/rim_table.py

Reads campaign/results/: ``rim-bundled.json`` (``python scripts/border_rim.py --mirror 0
auto 4 --json ...``), and ``bundled-x{s}-mirror-auto.json`` / ``-mirror4.json`` against
``bundled-x{s}.json`` (``seemore eval seemore-tiny-x{s} --data Set5 Set14 B100 --mirror
auto|4 --json ...``). Rim figures are in levels, border / interior.
"""

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "campaign" / "results"
SCALES = (2, 3, 4)
SETS = ("Set5", "Set14", "B100")


def _signed(v: float, digits: int) -> str:
    """``+0.0001``, ``-0.045``; a change that rounds to zero is ``0.0000``, without a sign."""
    text = f"{v:+.{digits}f}"
    return text[1:] if float(text) == 0 else text


def rows(results: Path = RESULTS) -> list[str]:
    rim = json.loads((results / "rim-bundled.json").read_text())["rows"]

    def rims(mirror: str, bold: bool = False) -> list[str]:
        cells = []
        for s in SCALES:
            r = rim[f"seemore-tiny-x{s} mirror {mirror}"]
            cell = f"{r['border']} / {r['interior']}"
            cells.append(f"**{cell}**" if bold else cell)
        return cells

    def change(tag: str, digits: int, unit: str) -> list[str]:
        cells = []
        for s in SCALES:
            base = json.loads((results / f"bundled-x{s}.json").read_text())
            run = json.loads((results / f"bundled-x{s}-mirror{tag}.json").read_text())
            d = [run[n]["psnr"] - base[n]["psnr"] for n in SETS]
            cells.append(" / ".join(_signed(v, digits) for v in d))
        cells[0] += unit
        return cells

    table = [
        ("rim, the network alone (`--mirror 0`, `seemore eval`'s default)", rims("0")),
        ("rim, `--mirror auto` (the upscaler's default)", rims("auto", bold=True)),
        ("Set5 / Set14 / B100, `--mirror auto`", change("-auto", 4, " dB")),
        ("Set5 / Set14 / B100, `--mirror 4` on every side", change("4", 3, "")),
    ]
    out = ["| | x2 | x3 | x4 |", "|---|---|---|---|"]
    out += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in table]
    return out


if __name__ == "__main__":
    print("\n".join(rows()))
