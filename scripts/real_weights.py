"""The real-photo weights' bookkeeping: degraded-benchmark evaluations, shipping, routing.

    python scripts/real_weights.py presets --scale 4 --method bicubic seemore-tiny-x4 RUN_DIR/latest.safetensors
        every preset (data/degrade.py) on Set14 and B100, into campaign/results/presets-x{scale}.json
        (a method's entry is replaced; labels: 'bicubic', the registry name, or 'real' for a
        file); '--denoise auto|S' evaluates the bundled -real name at that strength
    python scripts/real_weights.py ship --scale 4 --run campaign/runs/real-x4
        if the run's mean PSNR over the presets beats the bundled -real weights' (exit 3
        when not; --force ships anyway): the weights into the package as seemore-tiny-x4-real, a ledger line
        (campaign/ledger.jsonl, kind "real"), its routing on B100 before and after, and the
        run folder's state dropped (its log, metrics and curves stay); then `readme`
    python scripts/real_weights.py table
        the README's preset table (markdown) from presets-x{2,4}.json
    python scripts/real_weights.py routing MODEL...
        each layer's share of B100's images per expert rank

Benchmark images are for evaluation only: nothing here feeds back into training.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

BENCH = ROOT.parent / "shared" / "data" / "benchmark"
RESULTS = ROOT / "campaign" / "results"
PRESETS_JSON = RESULTS / "presets-x{scale}.json"  # one file a scale: the scales can be evaluated side by side
ROUTING_JSON = RESULTS / "routing-x{scale}.json"  # the shipped clean and real weights' routing on B100
LEDGER = ROOT / "campaign" / "ledger.jsonl"
WEIGHTS = ROOT / "src" / "seemore_sr" / "weights"
DATASETS = ("Set14", "B100")
TABLE_PRESETS = ("clean", "jpeg90", "jpeg70", "jpeg50", "noise5", "noise10", "mixed")


def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _label(method: str, denoise: str | None) -> str:
    if method == "bicubic":
        return method
    label = method if not method.endswith(".safetensors") else "real"
    return label + (f"@{denoise}" if denoise is not None else "")


def presets(scale: int, methods: list[str], denoise: str | None, only: list[str]) -> None:
    from seemore_sr import load_model
    from seemore_sr.data.degrade import PRESETS
    from seemore_sr.evaluation.evaluate import evaluate
    from seemore_sr.inference.upscaler import Upscaler

    data = [BENCH / d for d in DATASETS]
    path = Path(str(PRESETS_JSON).format(scale=scale))
    out = _load(path)
    for method in methods:
        if method == "bicubic":
            runner = "bicubic"
        elif denoise is not None:
            runner = Upscaler(method, mirror=0, denoise=denoise if denoise == "auto" else float(denoise))
        else:
            runner = Upscaler(load_model(method), mirror=0)
        label = _label(method, denoise)
        entry = out.setdefault(f"x{scale}", {}).setdefault(label, {})
        strengths: list[float] = []  # denoise "auto": the strength each image of a preset got
        if denoise == "auto":
            _record(runner, strengths)
        for preset in only or PRESETS:
            t = time.perf_counter()
            strengths.clear()
            res = evaluate(runner, data, scale, progress=False, degrade=preset, log=lambda m: None)
            entry[preset] = {r.name: r.summary()["psnr"] for r in res}
            if strengths:
                entry[preset]["auto_mean_strength"] = float(sum(strengths) / len(strengths))
            print(f"x{scale} {label:<28} {preset:<8} "
                  + " ".join(f"{d} {entry[preset][d]:.3f}" for d in DATASETS)
                  + (f" (auto strength {entry[preset]['auto_mean_strength']:.2f})" if strengths else "")
                  + f"  {time.perf_counter() - t:.0f}s", flush=True)  # fmt: skip
            path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


def _record(upscaler, strengths: list[float]) -> None:
    """Make ``upscaler`` append the auto strength of every image it is called on to ``strengths``."""
    choose = upscaler._choose

    def recorded(image) -> None:
        choose(image)
        strengths.append(upscaler.estimate.strength)

    upscaler._choose = recorded


def routing(models: list[str]) -> dict:
    """Each model's ``[layer][expert]`` share of B100's images (whole images, clean LR)."""
    from seemore_sr import load_model
    from seemore_sr.analysis.explain import expert_ranks_of, route_images, routing_counts
    from seemore_sr.data.images import read_image
    from seemore_sr.data.paired import find_pairs
    from seemore_sr.evaluation.evaluate import lr_for

    out = {}
    for name in models:
        model = load_model(name)
        s = model.config.scale
        lrs = []
        for hr_path, lr_path in find_pairs(BENCH / "B100", s, recursive=False):
            hr = read_image(hr_path)
            hr = hr[: hr.shape[0] // s * s, : hr.shape[1] // s * s]
            lrs.append(lr_for(hr, s, lr_path))
        counts = routing_counts(model, route_images(model, lrs))
        share = (counts / counts.sum(1, keepdims=True) * 100).round(1)
        out[name] = {"ranks": expert_ranks_of(model), "share_percent": share.tolist(), "images": len(lrs)}
        print(f"{name}: ranks {expert_ranks_of(model)}; per layer, % of B100 per rank: {share.tolist()}", flush=True)
    return out


def _mean(entry: dict) -> float:
    """Mean PSNR over the table's presets and both datasets."""
    return sum(entry[p][d] for p in TABLE_PRESETS for d in DATASETS) / (len(TABLE_PRESETS) * len(DATASETS))


def ship(scale: int, run: Path, force: bool) -> bool:
    """The run's weights into the package, when their mean PSNR over the presets beats the
    bundled -real weights' (or ``force``); False when they were kept out."""
    from safetensors import safe_open

    weights = run / "latest.safetensors"
    name = f"seemore-tiny-x{scale}-real"
    presets_path = Path(str(PRESETS_JSON).format(scale=scale))
    res = _load(presets_path).get(f"x{scale}", {})
    real, clean = res.get("real", {}), res.get(f"seemore-tiny-x{scale}", {})
    gains = {
        p: {d: round(real[p][d] - clean[p][d], 3) for d in DATASETS} for p in TABLE_PRESETS if p in real and p in clean
    }
    print(f"{name}: gain over the clean weights per preset: {gains}")
    if name in res and not force:
        new, old = _mean(real), _mean(res[name])
        print(f"{name}: mean PSNR over the presets {new:.3f} (the run) against {old:.3f} (bundled)")
        if new <= old:
            print(f"{name}: kept the bundled weights ({run} is not better)")
            return False
    with safe_open(str(weights), "pt") as f:
        iters = int(json.loads(f.metadata().get("provenance", "{}")).get("iterations", 0))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    cpu_s = sum(r.get("cpu_s", 0.0) for r in rows if "loss" in r)
    shutil.copyfile(weights, WEIGHTS / f"{name}.safetensors")
    route = routing([f"seemore-tiny-x{scale}", name])
    out = Path(str(ROUTING_JSON).format(scale=scale))
    out.write_text(json.dumps(route, indent=1) + "\n")
    cfg = (run / "config.yaml").read_text()
    entry = dict(run=run.name, kind="real", scale=scale, name=name, iterations=iters, cpu_hours=round(cpu_s / 3600, 3),
                 presets=real, gain_over_clean=gains, routing=route[name]["share_percent"], shipped=True,
                 config=cfg)  # fmt: skip
    with LEDGER.open("a") as f:
        f.write(json.dumps(entry) + "\n")
    presets_all = _load(presets_path)
    presets_all[f"x{scale}"][name] = presets_all[f"x{scale}"].pop("real")  # the file is now the bundled name
    presets_path.write_text(json.dumps(presets_all, indent=1, sort_keys=True) + "\n")
    for p in ("state.pt", "best.safetensors", "latest.safetensors"):
        (run / p).unlink(missing_ok=True)  # the package holds the weights; the run folder keeps its records
    print(f"shipped {name} ({iters} iterations, {cpu_s / 3600:.2f} CPU-hours)")
    return True


def routing_text() -> str:
    """The README's routing sentence, from campaign/results/routing.json (the shipped weights)."""
    r = {}
    for scale in (2, 4):
        r.update(_load(Path(str(ROUTING_JSON).format(scale=scale))))
    parts = []
    for name in sorted(r, key=lambda n: (n.endswith("-real"), n)):
        share, ranks = r[name]["share_percent"], r[name]["ranks"]
        top = [max(range(len(ranks)), key=lambda e: layer[e]) for layer in share]
        worst = max(max(layer) for layer in share)
        layers = ", ".join(f"{'/'.join(f'{v:.0f}' for v in layer)}" for layer in share)
        parts.append(f"`{name}` {layers} (largest share {worst:.0f}%; ranks most chosen {[ranks[t] for t in top]})")
    if not parts:
        return "Routing is measured when the real weights ship."
    return (
        "Routing on B100 (whole images; per layer, % of images sent to the rank-"
        + "/".join(str(x) for x in next(iter(r.values()))["ranks"])
        + " experts; `python scripts/real_weights.py routing NAME`): "
        + "; ".join(parts)
        + "."
    )


MARKERS = {"real-table": lambda: table(), "routing": routing_text}


def write_readme(readme: Path = ROOT / "README.md") -> bool:
    """Replace the README's generated blocks (``<!-- name -->...<!-- /name -->``); True if changed."""
    import re

    old = text = readme.read_text()
    for name, make in MARKERS.items():
        body = make().strip()
        sep = "\n" if "\n" in body or name == "real-table" else ""
        pattern = re.compile(rf"<!-- {name} -->.*?<!-- /{name} -->", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md: no <!-- {name} --> block")
        text = pattern.sub(lambda _m, b=body, s=sep, n=name: f"<!-- {n} -->{s}{b}{s}<!-- /{n} -->", text)
    if text != old:
        readme.write_text(text)
    return text != old


def table() -> str:
    res = {}
    for scale in (2, 4):
        res.update(_load(Path(str(PRESETS_JSON).format(scale=scale))))
    lines = []
    for scale in ("x2", "x4"):
        if scale not in res:
            continue
        methods = [("bicubic", "bicubic"), (f"seemore-tiny-{scale}", "clean"), (f"seemore-tiny-{scale}-real", "real"),
                   (f"seemore-tiny-{scale}-real@auto", "real, auto")]  # fmt: skip
        methods = [(k, v) for k, v in methods if k in res[scale]]
        head = "| " + scale + " | " + " | ".join(f"{v} Set14 / B100" for _, v in methods) + " |"
        lines += [head, "|" + "---|" * (len(methods) + 1)]
        for p in TABLE_PRESETS:
            cells = []
            for k, _ in methods:
                r = res[scale][k].get(p)
                cells.append(f"{r['Set14']:.2f} / {r['B100']:.2f}" if r else "-")
            lines.append(f"| {p} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["presets", "ship", "table", "routing", "readme"])
    p.add_argument("models", nargs="*", help="routing: models")
    p.add_argument("--scale", type=int, choices=[2, 3, 4])
    p.add_argument("--method", nargs="+", default=[], help="presets: bicubic, registry names or weight files")
    p.add_argument("--denoise", help="presets: evaluate the name's denoise blend (auto or a strength)")
    p.add_argument("--only", nargs="+", default=[], help="presets: these presets only")
    p.add_argument("--run", type=Path, help="ship: the finished run folder")
    p.add_argument("--force", action="store_true", help="ship: even when the bundled weights score higher")
    a = p.parse_args()
    if a.command == "presets":
        presets(a.scale, a.method, a.denoise, a.only)
    elif a.command == "ship":
        sys.exit(0 if ship(a.scale, a.run, a.force) else 3)
    elif a.command == "table":
        print(table())
    elif a.command == "readme":
        print("README.md: generated blocks " + ("rewritten" if write_readme() else "up to date"))
    else:
        routing(a.models)


if __name__ == "__main__":
    main()
