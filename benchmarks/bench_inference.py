"""Inference paths side by side: latency (interleaved repeats), peak memory, exactness.

    python benchmarks/bench_inference.py                       # tiny x4, 720p output
    python benchmarks/bench_inference.py --models all --repeats 5
    python benchmarks/bench_inference.py --compile --memory    # add torch.compile, peak RSS
    python benchmarks/bench_inference.py --blocked             # each path's repeats back to back
    python benchmarks/bench_inference.py --peers               # vs the authors' code, SAFMN, SPAN (spandrel)
    python benchmarks/bench_inference.py --peers --openvino    # + SPAN and ours in OpenVINO
    python benchmarks/bench_inference.py --peers --compile     # + SPAN and ours through torch.compile (frozen)

Paths: ``baseline`` (the plain eager module: NCHW, fp32, as the authors wrote it),
``channels_last`` (the same module in channels_last), ``optimize`` (``seemore_sr.optimize``
with the executor it chooses on this machine, named in the header: on CPUs it measures),
``exec:NAME`` (the folded network with each executor forced, CPU: ``nhwc-fused`` oneDNN
GEMMs with fused post-ops, ``nhwc`` plain PyTorch ops on NHWC, ``nchw-cl`` NCHW convs on
channels_last memory, ``nchw``; GPU: ``nhwc`` only, the CPU path on the GPU),
``optimize+compile`` (optional), ``optimize-bf16
(autocast, CPUs with bf16 / GPUs), ``optimize-fp16`` (GPU only), ``onnxruntime`` (CPU: the
exported graph, as ``--backend onnxruntime`` runs it), ``onnxruntime-unfolded`` (the eager
module traced as it is, ``export_onnx(folded=False)``) and, with ``--openvino``, the
exported graph in OpenVINO (a benchmark-only dependency, like spandrel for ``--peers``).
Every path's output is compared with the baseline: max abs difference for fp32 paths,
PSNR for reduced precision. ``faults`` counts the minor page faults of each call: the
memory the allocator had to map (and the kernel to zero) anew. With interleaved repeats
a path pays for the heap state the previous path left, so the rounds follow a balanced
Latin square (``seemore_sr.bench.interleaved``: every path in every position, and after
every other path, equally often); ``--blocked`` shows each path back to back, as when
one module upscales a folder.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import warnings

import torch

from seemore_sr import create_model, list_models
from seemore_sr.bench import cpu_description, interleaved, time_call
from seemore_sr.inference.export import OnnxUpscaler, export_onnx
from seemore_sr.inference.fast import EXECUTORS, CudaGraphed, make_ops, optimize
from seemore_sr.models.complexity import paper_input_size
from seemore_sr.models.folded import fold
from seemore_sr.models.seemore import pad_to_min


def paths_for(model, device, args):
    out = {"baseline": model}
    cl = create_model(f"seemore-{args.current}").to(device)
    cl.load_state_dict(model.state_dict())
    cl = cl.to(memory_format=torch.channels_last)
    out["channels_last"] = lambda x: cl(x.contiguous(memory_format=torch.channels_last))
    fast = optimize(model)
    print(f"# optimize chose: {fast.executor}")
    for name in EXECUTORS if device.type == "cpu" else ["nhwc"]:
        out[f"exec:{name}"] = fold(model, make_ops(name))
    out["optimize"] = fast
    if args.compile:
        out["optimize+compile"] = torch.compile(optimize(model), dynamic=True)
    bf16_ok = device.type == "cuda" or torch.backends.mkldnn.is_available()
    fast_bf16, fast_fp16 = optimize(model), optimize(model)  # own modules: CUDA graphs are per precision
    if bf16_ok:

        def bf16(x, fast=fast_bf16):
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return fast(x)

        out["optimize-bf16"] = bf16
    if device.type == "cuda":

        def fp16(x, fast=fast_fp16):
            with torch.autocast("cuda", dtype=torch.float16):
                return fast(x)

        out["optimize-fp16"] = fp16
        for dt, name in ((torch.bfloat16, "bf16"), (torch.float16, "fp16")):  # the same in cuDNN's NHWC layout
            graphed = CudaGraphed(model, ops=make_ops("nchw-cl"))  # cuDNN's NHWC layout

            def half_cl(x, fast=graphed, dt=dt):
                with torch.autocast("cuda", dtype=dt):
                    return fast(x)

            out[f"optimize-{name}-cl"] = half_cl
    if device.type == "cpu" and not args.no_onnx:
        path = os.path.join(tempfile.mkdtemp(), "m.onnx")
        export_onnx(model, path)
        cfg = model.config
        out["onnxruntime"] = OnnxUpscaler(path, cfg.scale, cfg.min_size, threads=torch.get_num_threads())
        dense = export_onnx(model, os.path.join(os.path.dirname(path), "dense.onnx"), folded=False)
        out["onnxruntime-unfolded"] = OnnxUpscaler(dense, cfg.scale, cfg.min_size, threads=torch.get_num_threads())
        if args.openvino:
            out["openvino"] = OpenVino(path, cfg.scale, cfg.min_size)
    return out


def psnr(a, b):
    mse = ((a.clamp(0, 1) - b.clamp(0, 1)).double() ** 2).mean().item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(1.0 / mse)).item()


@torch.no_grad()
def cuda_peak_mb(fn, x, device) -> float:
    """Peak CUDA memory allocated during one call, above what was allocated before it."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn(x)
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def peak_rss_mb(name: str, path_name: str, shape, device: str) -> float:
    """Peak RSS growth of a fresh process during one forward of ``path_name`` (Linux, after a warm-up)."""
    code = f"""
import torch, sys
sys.argv = ['x']
from seemore_sr import create_model
from seemore_sr.inference.fast import optimize
m = create_model({name!r}).to({device!r})
x = torch.rand{tuple(shape)!r}.to({device!r})
if {path_name!r} == 'channels_last':
    m = m.to(memory_format=torch.channels_last); x = x.contiguous(memory_format=torch.channels_last)
elif {path_name!r} != 'baseline':
    m = optimize(m)
def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1])
with torch.no_grad():
    m(x)  # warm-up: allocator pools and oneDNN primitives exist before the measurement
open('/proc/self/clear_refs', 'w').write('5')  # reset the peak (VmHWM) to the current RSS
base = status('VmRSS')
with torch.no_grad():
    m(x)
print((status('VmHWM') - base) / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _spandrel_arch(folder: str, file: str):
    """One architecture file from spandrel (a benchmark-only dependency: ``pip install --no-deps
    spandrel einops``). Its package ``__init__`` imports every architecture, some of them needing
    torchvision, which does not import beside the CPU torch here; the files we time need only
    torch, einops and ``spandrel.util``, so the package is entered without its ``__init__``."""
    import importlib.util
    import types

    if "spandrel" not in sys.modules:
        spec = importlib.util.find_spec("spandrel")
        if spec is None:
            raise SystemExit("--peers needs spandrel: pip install --no-deps spandrel einops")
        pkg = types.ModuleType("spandrel")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["spandrel"] = pkg
    path = os.path.join(sys.modules["spandrel"].__path__[0], "architectures", folder, "__arch", file)
    mod_spec = importlib.util.spec_from_file_location(f"peer_{folder.lower()}", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


class OpenVino:
    """An exported graph in OpenVINO on the CPU, fp32 (``--openvino``; a benchmark-only
    dependency: ``pip install openvino``). Its default on CPUs with bf16 units (AMX,
    AVX512-BF16) is bf16 compute; the precision hint keeps it fp32."""

    def __init__(self, path: str, scale: int, min_size: int) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise SystemExit("--openvino needs: pip install openvino") from None
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        config["INFERENCE_NUM_THREADS"] = torch.get_num_threads()
        self.request = ov.Core().compile_model(str(path), "CPU", config).create_infer_request()
        self.scale, self.min_size = scale, min_size

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        y = self.request.infer({0: pad_to_min(x, self.min_size).contiguous().numpy()})[0]
        return torch.from_numpy(y.copy())[..., : h * self.scale, : w * self.scale]


def _export_plain(net, x, folder: str) -> str:
    """A peer's eager module as ONNX (dynamic batch / height / width), for the graph runtimes."""
    path = os.path.join(folder, "peer.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, (x,), path, input_names=["lr"], output_names=["sr"], opset_version=17, dynamo=False,
            dynamic_axes={"lr": {0: "batch", 2: "height", 3: "width"}},
        )  # fmt: skip
    return path


def peers(args) -> int:
    """The authors' SeemoRe-T (spandrel's copy of their architecture), SAFMN, SPAN and ours,
    x4 to 1280x720, random weights, in one process, interleaved."""
    torch.manual_seed(0)
    ours = create_model("seemore-tiny-x4").eval()
    cfg = ours.config
    authors = _spandrel_arch("SeemoRe", "seemore_arch.py").SeemoRe(
        scale=4, in_chans=3, num_experts=cfg.num_experts, num_layers=cfg.num_layers, embedding_dim=cfg.embedding_dim,
        img_range=cfg.img_range, use_shuffle=cfg.use_shuffle, global_kernel_size=cfg.global_kernel_size,
        recursive=cfg.recursive, lr_space=cfg.lr_space, topk=cfg.topk,
    ).eval()  # fmt: skip
    authors.load_state_dict(ours.state_dict())  # the released checkpoints' keys: the same weights
    safmn = _spandrel_arch("SAFMN", "safmn.py").SAFMN(dim=36, n_blocks=8, ffn_scale=2.0, upscaling_factor=4).eval()
    span = _spandrel_arch("SPAN", "span.py").SPAN(num_in_ch=3, num_out_ch=3, feature_channels=48, upscale=4).eval()
    paths = {
        "authors' SeemoRe-T": authors,
        "SAFMN (36 ch, 8 blocks)": safmn,
        "SPAN (48 ch)": span,
        f"ours, optimize() fp32 [{optimize(ours).executor}]": optimize(ours),
        **{f"ours, executor {name}": fold(ours, make_ops(name)) for name in EXECUTORS},
    }
    h, w = paper_input_size(4)
    x = torch.rand(1, 3, h, w)
    device = torch.device("cpu")
    diffs = {}
    if args.openvino:  # a graph runtime for both: SPAN's module and ours exported, run the same way
        folder = tempfile.mkdtemp()
        paths["SPAN, OpenVINO fp32"] = OpenVino(_export_plain(span, x, folder), 4, 1)
        paths["ours, OpenVINO fp32"] = OpenVino(export_onnx(ours, os.path.join(folder, "ours.onnx")), 4, cfg.min_size)
        with torch.no_grad():
            diffs["SPAN, OpenVINO fp32"] = (paths["SPAN, OpenVINO fp32"](x) - span(x)).abs().max().item()
    if args.compile:  # inductor with frozen weights (its CPU inference mode): C++ kernels fused around oneDNN's
        frozen = {"freezing": True}
        paths["SPAN, torch.compile (frozen)"] = torch.compile(span, options=frozen)
        dense = fold(ours, make_ops("nchw-cl"), dense=True)  # a static graph: every expert, no data-dependent slice
        paths["ours, torch.compile nchw-cl (frozen)"] = torch.compile(dense, options=frozen)
    with torch.no_grad():
        ref = authors(x)
        if args.compile:
            diffs["SPAN, torch.compile (frozen)"] = (
                (paths["SPAN, torch.compile (frozen)"](x) - span(x)).abs().max().item()
            )
        for k in paths:
            if k.startswith("ours"):
                diffs[k] = (paths[k](x) - ref).abs().max().item()
        for f in paths.values():  # warm-up
            f(x)
        times = {k: [] for k in paths}
        for k in interleaved(paths, args.repeats):
            times[k].append(time_call(lambda f=paths[k]: f(x), device))
    print(f"# machine: {cpu_description()}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(
        f"# x4 to 1280x720 (input {w}x{h}), batch 1, fp32, random weights; "
        f"{args.repeats} interleaved rounds, balanced order"
    )
    for k, d in diffs.items():
        against = "SPAN in torch" if k.startswith("SPAN") else "the authors' code, same weights"
        print(f"# {k}: max |diff| {d:.1e} from {against}")
    base = statistics.median(times["authors' SeemoRe-T"])
    print(f"{'model':<40} {'median ms':>10} {'range ms':>17} {'vs authors':>11}")
    rows = {}
    for k, t in times.items():
        med = statistics.median(t)
        rows[k] = {"median_ms": 1e3 * med, "min_ms": 1e3 * min(t), "max_ms": 1e3 * max(t), "vs_authors": med / base}
        print(f"{k:<40} {1e3 * med:10.0f} {1e3 * min(t):8.0f}..{1e3 * max(t):<8.0f} {med / base:10.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": cpu_description(), "max_abs_diff": diffs, "models": rows}, f, indent=1)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="tiny-x4", help="comma list like tiny-x4,base-x2, or 'all'")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument(
        "--compile", action="store_true", help="also measure torch.compile (with --peers: SPAN's and ours, frozen)"
    )
    p.add_argument("--memory", action="store_true", help="peak memory per path (CPU: RSS in subprocesses; CUDA)")
    p.add_argument("--no-onnx", action="store_true", help="leave out the graph runtimes")
    p.add_argument("--openvino", action="store_true", help="add OpenVINO rows (CPU; pip install openvino)")
    p.add_argument("--blocked", action="store_true", help="run each path's repeats back to back instead of interleaved")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--peers", action="store_true", help="ours against the authors' SeemoRe-T, SAFMN and SPAN (CPU)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.peers:
        return peers(args)
    device = torch.device(args.device)
    torch.backends.cudnn.allow_tf32 = False  # fp32 means fp32: no TF32 convolutions / GEMMs
    torch.backends.cuda.matmul.allow_tf32 = False
    names = (
        [n.removeprefix("seemore-") for n in list_models() if not n.endswith("x1")]
        if args.models == "all"
        else args.models.split(",")
    )
    print(
        f"# machine: {cpu_description()}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    )
    order = "back-to-back" if args.blocked else "interleaved (balanced order)"
    print(f"# output 1280x720, batch 1, {args.repeats} {order} repeats after two warm-ups; median (min..max)")
    print("# faults: median minor page faults per call (memory the allocator mapped anew)")
    results = {}
    for name in names:
        args.current = name
        torch.manual_seed(0)
        model = create_model(f"seemore-{name}").to(device)
        h, w = paper_input_size(model.config.scale)
        x = torch.rand(1, 3, h, w, device=device)
        paths = paths_for(model, device, args)
        with torch.no_grad():
            ref = model(x)
            outs = {k: f(x) for k, f in paths.items()}  # warm-up, and the exactness check
            outs = {k: f(x) for k, f in paths.items()}  # second warm-up (CUDA graphs capture here)
            times = {k: [] for k in paths}
            faults = {k: [] for k in paths}  # minor page faults per call: memory the allocator had to map anew
            order = (
                [k for k in paths for _ in range(args.repeats)] if args.blocked else interleaved(paths, args.repeats)
            )
            for k in order:
                f, before = paths[k], resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                times[k].append(time_call(lambda f=f, x=x: f(x), device))
                faults[k].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        base = statistics.median(times["baseline"])
        print(f"\n## seemore-{name} (input {w}x{h})")
        print(
            f"{'path':<20} {'median ms':>10} {'range ms':>17} {'speedup':>8} {'max|diff|':>10} {'PSNR vs base':>13}"
            + f" {'faults':>8}"
            + ("  peak MB" if args.memory else "")
        )
        results[name] = {}
        for k in paths:
            med = statistics.median(times[k])
            diff = (outs[k].float() - ref).abs().max().item()
            row = {
                "median_ms": 1e3 * med, "min_ms": 1e3 * min(times[k]), "max_ms": 1e3 * max(times[k]),
                "speedup": base / med, "max_abs_diff": diff, "psnr_vs_baseline": psnr(outs[k].float(), ref),
                "page_faults": statistics.median(faults[k]),
            }  # fmt: skip
            mem = ""
            if args.memory and device.type == "cuda":
                if k == "optimize":  # a fresh module: its first two calls (eager, then capture) hold the peak
                    fresh = optimize(model)
                    row["peak_mb"] = cuda_peak_mb(lambda x, f=fresh: (f(x), f(x)), x, device)
                else:
                    row["peak_mb"] = cuda_peak_mb(paths[k], x, device)
                mem = f"  {row['peak_mb']:7.0f}"
            elif args.memory and k in ("baseline", "channels_last", "optimize"):
                row["peak_rss_mb"] = peak_rss_mb(f"seemore-{name}", k, (1, 3, h, w), args.device)
                mem = f"  {row['peak_rss_mb']:7.0f}"
            results[name][k] = row
            rng = f"{row['min_ms']:.0f}..{row['max_ms']:.0f}"
            print(
                f"{k:<20} {row['median_ms']:>10.1f} {rng:>17} {row['speedup']:>7.2f}x {diff:>10.2e} "
                f"{row['psnr_vs_baseline']:>13.1f} {row['page_faults']:>8.0f}{mem}"
            )
    if args.json:
        with open(args.json, "w") as f:
            meta = {"threads": torch.get_num_threads(), "repeats": args.repeats, "blocked": args.blocked}
            json.dump({**meta, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
