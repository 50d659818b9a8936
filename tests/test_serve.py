"""``seemore serve``: the job queue and the HTTP API, against a real server on loopback."""

import io
import json
import socket
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image

from seemore_sr import load_model
from seemore_sr.cli import main
from seemore_sr.serve import is_loopback
from seemore_sr.serve.app import create_app
from seemore_sr.serve.jobs import Job, Jobs, Settings, safe_name


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two different real photos (crops of the bundled sample), as PNG files."""
    root = Path(__file__).resolve().parents[1] / "src/seemore_sr/assets/sample.png"
    folder = tmp_path_factory.mktemp("photos")
    with Image.open(root) as im:
        im.crop((0, 0, 72, 56)).save(folder / "a.png")
        im.crop((60, 40, 160, 128)).save(folder / "b.png")
    return folder


class Gate:
    """Holds the worker at its first progress report until opened (to test queues and cancels)."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.open = threading.Event()


class GatedJobs(Jobs):
    gate: Gate | None = None

    def _progress(self, job):
        report = super()._progress(job)
        gate = self.gate

        def gated(done, total):
            if gate is not None and not gate.open.is_set():
                gate.reached.set()
                assert gate.open.wait(30)
            report(done, total)

        return gated


@contextmanager
def serving(small_model, tmp_path, max_bytes=1 << 20, **kwargs):
    """A live server on a free loopback port: ``(base URL, jobs)``."""
    jobs = GatedJobs({"small-x2": load_model(small_model)}, device="cpu", root=tmp_path, **kwargs)
    with serving_jobs(jobs, max_bytes) as base:
        yield base, jobs


@contextmanager
def serving_jobs(jobs, max_bytes=64 << 20):
    """``jobs`` served on a free loopback port: the base URL. Closes ``jobs`` at the end."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(jobs, max_bytes=max_bytes), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        if getattr(jobs, "gate", None) is not None:
            jobs.gate.open.set()
        server.should_exit = True
        thread.join(10)
        jobs.close()
        sock.close()


def post(base, path, **params):
    data = Path(path).read_bytes() if not isinstance(path, bytes) else path
    params.setdefault("name", Path(path).name if not isinstance(path, bytes) else "x.png")
    return httpx.post(f"{base}/api/jobs", params=params, content=data, timeout=30)


def wait(base, job_id, timeout=60):
    """Follow the job's event stream to its end; the last event."""
    last = None
    with httpx.stream("GET", f"{base}/api/jobs/{job_id}/events", timeout=timeout) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                last = json.loads(line[6:])
    return last


def cli_output(small_model, src, tmp_path, *extra, ext="png"):
    """What ``seemore upscale`` writes for ``src``."""
    out = tmp_path / "cli"
    args = ["upscale", str(src), "-o", str(out), "--model", str(small_model), "--no-progress"]
    assert main([*args, *extra]) == 0
    return (out / f"{Path(src).stem}.{ext}").read_bytes()


def test_settings_and_names():
    assert Settings.parse({}, ["m"]) == Settings("m", "fp32", "auto", None)
    pair = ["a-x2", "a-x2-real"]
    assert Settings.parse({"model": "a-x2-real", "denoise": "auto"}, pair).denoise == "auto"
    assert Settings.parse({"model": "a-x2", "denoise": "0.3"}, pair).denoise == 0.3
    for bad, words in [({"denoise": "0.3"}, "clean and -real"), ({"model": "a-x2", "denoise": "2"}, "from 0 to 1")]:
        with pytest.raises(ValueError, match=words):
            Settings.parse(bad, ["m"] if "model" not in bad else pair)
    assert Settings.parse({"tile": "64", "format": "JPG", "precision": "bf16"}, ["m"]) == Settings(
        "m", "bf16", 64, "jpg"
    )
    for bad, words in [({"model": "x"}, "unknown model"), ({"tile": "7"}, "tile must"), ({"tile": "-1"}, "tile must"),
                       ({"precision": "fp16"}, "precision"), ({"format": "gif"}, "format must")]:  # fmt: skip
        with pytest.raises(ValueError, match=words):
            Settings.parse(bad, ["m"])
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("C:\\Users\\me\\My Photo (1).PNG") == "My_Photo_1.png"
    assert safe_name("") == "image" and safe_name("..png") == "image.png"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")


def test_upload_result_equals_cli_and_previews(small_model, photos, tmp_path):
    with serving(small_model, tmp_path / "srv") as (base, jobs):
        page = httpx.get(f"{base}/").text
        assert '<script src="/static/app.js">' in page and "http" not in page.replace("http-equiv", "")
        config = httpx.get(f"{base}/api/config").json()
        assert config["models"] == [{"name": "small-x2", "scale": 2, "denoise": False}]
        for params, ext in [({}, "png"), ({"tile": "32"}, "png"), ({"format": "tiff"}, "tiff")]:
            r = post(base, photos / "a.png", **params)
            assert r.status_code == 202, r.text
            done = wait(base, r.json()["id"])
            assert done["state"] == "done", done
            assert (done["width"], done["height"], done["out_width"], done["out_height"]) == (72, 56, 144, 112)
            assert done["filename"] == f"a.{ext}" and len(done["routing"]) == 1 and done["routing"][0]["ranks"]
            assert done["tile"] == (32 if params.get("tile") else 0)
            got = httpx.get(f"{base}/api/jobs/{done['id']}/result")
            assert (
                got.status_code == 200 and f'filename="a.{ext}"' in got.headers["content-disposition"]
            )  # the CLI's name
            bicubic = httpx.get(f"{base}/api/jobs/{done['id']}/preview/bicubic")
            assert done["has_bicubic"] and Image.open(io.BytesIO(bicubic.content)).size == (144, 112)
            extra = [
                *(["--tile", params["tile"]] if "tile" in params else []),
                *(["--format", ext] if "format" in params else []),
            ]
            assert got.content == cli_output(small_model, photos / "a.png", tmp_path / str(params), *extra, ext=ext)
            preview = httpx.get(f"{base}/api/jobs/{done['id']}/preview/output")
            assert Image.open(io.BytesIO(preview.content)).format == "PNG"  # TIFF gets a PNG preview
            assert done["done"] == done["total"] and (done["total"] > 1) == ("tile" in params)
        assert httpx.get(f"{base}/api/jobs/nope").status_code == 404
        # a finished job's files go when the user deletes it
        folder = jobs.jobs[done["id"]].folder
        assert httpx.delete(f"{base}/api/jobs/{done['id']}").status_code == 204
        assert not folder.exists() and httpx.get(f"{base}/api/jobs/{done['id']}").status_code == 404


def bomb_png(w, h) -> bytes:
    """A valid small PNG header that claims ``w x h`` pixels."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_bad_files_get_clear_errors_and_the_server_keeps_serving(small_model, photos, tmp_path):
    good = photos / "a.png"
    truncated = good.read_bytes()[: len(good.read_bytes()) // 2]
    big = np.random.default_rng(0).integers(0, 255, (300, 300, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, format="PNG")
    with serving(small_model, tmp_path / "srv", max_bytes=200_000, max_pixels=50_000) as (base, jobs):
        cases = [
            (b"this is not an image", "x.png", 400, "not an image"),
            (bomb_png(100_000, 100_000), "bomb.png", 400, "pixel limit"),
            (buf.getvalue(), "big.png", 413, "limit"),  # 270 kB, over the 200 kB limit
            (np.zeros(1, np.uint8).tobytes(), "notes.txt", 400, "not a supported image type"),
            (b"", "empty.png", 400, "empty"),
        ]
        for data, name, status, words in cases:
            r = httpx.post(f"{base}/api/jobs", params={"name": name}, content=data)
            assert r.status_code == status and words in r.json()["error"], (name, r.status_code, r.text)
        Image.fromarray(big[:250, :250]).save(tmp_path / "mp.png")  # 62,500 pixels: over 50,000
        r = post(base, tmp_path / "mp.png")
        assert r.status_code == 400 and "pixel limit" in r.json()["error"]
        r = post(base, truncated, name="cut.png")  # the header is fine: it fails when decoded
        assert r.status_code == 202
        failed = wait(base, r.json()["id"])
        assert failed["state"] == "failed" and "truncated" in failed["error"]
        assert wait(base, post(base, good).json()["id"])["state"] == "done"  # still serving
        assert httpx.post(f"{base}/api/jobs", params={"name": "a.png", "tile": "7"}, content=b"x").status_code == 400
        # nothing left behind but the one good job's input and result
        assert sorted(p.name for p in jobs.root.rglob("*") if p.is_file()) == ["a.bicubic.png", "a.png", "a.png", "pid"]


def test_full_queue_says_so_and_two_clients_get_their_own_results(small_model, photos, tmp_path):
    with serving(small_model, tmp_path / "srv", max_queue=1) as (base, jobs):
        jobs.gate = Gate()
        first = post(base, photos / "a.png").json()["id"]  # runs, held at its first tile
        assert jobs.gate.reached.wait(30)
        second = post(base, photos / "b.png").json()["id"]  # waits
        third = post(base, photos / "a.png")
        assert third.status_code == 503 and "queue is full" in third.json()["error"]
        assert httpx.get(f"{base}/api/jobs/{second}").json()["position"] == 1
        jobs.gate.open.set()
        results = {}

        def client(job_id):
            results[job_id] = wait(base, job_id)

        threads = [threading.Thread(target=client, args=(j,)) for j in (first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert results[first]["name"] == "a.png" and results[second]["name"] == "b.png"
        for job_id, src in [(first, "a.png"), (second, "b.png")]:
            got = httpx.get(f"{base}/api/jobs/{job_id}/result").content
            assert got == cli_output(small_model, photos / src, tmp_path / src)


def test_concurrent_uploads_from_two_clients(small_model, photos, tmp_path):
    with serving(small_model, tmp_path / "srv") as (base, jobs):
        got = {}

        def client(name):
            job = post(base, photos / name, tile="32").json()["id"]
            assert wait(base, job)["state"] == "done"
            got[name] = httpx.get(f"{base}/api/jobs/{job}/result").content

        threads = [threading.Thread(target=client, args=(n,)) for n in ("a.png", "b.png")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for name in ("a.png", "b.png"):
            assert got[name] == cli_output(small_model, photos / name, tmp_path / name, "--tile", "32")


def test_a_closed_page_cancels_its_job(small_model, photos, tmp_path):
    with serving(small_model, tmp_path / "srv", abandon_s=0.5) as (base, jobs):
        jobs.gate = Gate()
        job_id = post(base, photos / "a.png", tile="32").json()["id"]
        with httpx.stream("GET", f"{base}/api/jobs/{job_id}/events") as r:  # the page watches
            lines = r.iter_lines()  # kept: a dropped iterator closes the stream
            assert next(lines).startswith("data: ")
            assert jobs.gate.reached.wait(30)
            time.sleep(1.0)  # longer than abandon_s: watched, so not abandoned
            assert jobs.jobs[job_id].watchers == 1
        folder = jobs.jobs[job_id].folder
        time.sleep(1.0)  # the tab is gone
        jobs.gate.open.set()
        for _ in range(100):
            if job_id not in jobs.jobs:
                break
            time.sleep(0.05)
        assert job_id not in jobs.jobs and not folder.exists()  # cancelled at the next tile, files removed
        # the beacon a closing page sends cancels at once, even while it is watched
        jobs.gate = Gate()
        job_id = post(base, photos / "b.png", tile="32").json()["id"]
        assert jobs.gate.reached.wait(30)
        assert httpx.post(f"{base}/api/jobs/{job_id}/cancel").status_code == 200
        jobs.gate.open.set()
        for _ in range(100):
            if job_id not in jobs.jobs:
                break
            time.sleep(0.05)
        assert job_id not in jobs.jobs
        assert wait(base, post(base, photos / "a.png").json()["id"])["state"] == "done"  # still serving


class FinishingJob(Job):
    """A running job that the worker finishes just after the event stream has read its view."""

    def view(self, position=0):
        out = super().view(position)
        if self.state == "running":
            self.state, self.error = "failed", "finished between two reads"
        return out


def test_the_event_stream_ends_with_the_final_state(small_model, tmp_path):
    """The last event is the job's end, even when the job ends while its view is being sent."""
    with serving(small_model, tmp_path / "srv") as (base, jobs):
        job = FinishingJob("a.png", tmp_path, Settings("small-x2", "fp32", "auto", None), state="running")
        jobs.jobs[job.id] = job
        assert wait(base, job.id)["state"] == "failed"


def test_finished_jobs_expire_and_close_removes_everything(small_model, photos, tmp_path):
    with serving(small_model, tmp_path / "srv", keep_s=0.2) as (base, jobs):
        done = wait(base, post(base, photos / "a.png").json()["id"])
        folder = jobs.jobs[done["id"]].folder
        assert folder.exists()
        time.sleep(0.3)
        jobs._sweep()
        assert not folder.exists() and done["id"] not in jobs.jobs
        root = jobs.root
    assert not root.exists()


def test_cli_serve_refuses_a_busy_port_and_warns_off_loopback(small_model, capsys, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", "--model", str(small_model), "--port", str(port)]) == 2
    assert "choose another --port" in capsys.readouterr().err
    assert main(["serve", "--model", str(small_model), "--queue", "0"]) == 2
    import uvicorn as uv

    ran = {}
    monkeypatch.setattr(uv, "run", lambda app, **kw: ran.update(kw))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["serve", "--model", str(small_model), "--host", "0.0.0.0", "--port", "0"]) == 2  # port 0 refused
        assert main(["serve", "--model", str(small_model), "--host", "0.0.0.0", "--port", str(port)]) == 0
    assert ran["host"] == "0.0.0.0" and any("reachable from other machines" in str(w.message) for w in caught)
    assert "http://0.0.0.0:" in capsys.readouterr().out


@pytest.mark.slow
def test_a_stopped_server_leaves_no_files(small_model, photos, tmp_path):
    """SIGTERM (or Ctrl-C) stops the server cleanly: its temporary folder goes with it, also
    with a finished job's files in it (uvicorn re-raises the signal after shutting down, so
    the cleanup must happen in the app's shutdown, not after ``uvicorn.run``)."""
    import os
    import signal
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "seemore_sr", "serve", "--model", str(small_model), "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "http://127.0.0.1:" in proc.stdout.readline()
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(f"{base}/api/config")
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        assert wait(base, post(base, photos / "a.png").json()["id"])["state"] == "done"
        assert len(list(tmp_path.glob("seemore-serve-*/job-*/out/a.png"))) == 1
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        proc.kill()
    assert list(tmp_path.glob("seemore-serve-*")) == []


def test_denoise_blends_the_pair_and_auto_reports_its_choice(small_model, photos, tmp_path):
    """A clean / -real pair: a strength picks the blend (0: the clean output, byte for byte),
    auto says what it read off the image."""
    import torch

    clean = load_model(small_model)
    real = load_model(small_model)
    with torch.no_grad():
        for p in real.parameters():
            p.add_(0.05)
    jobs = Jobs({"t-x2": clean, "t-x2-real": real}, device="cpu", root=tmp_path / "srv")
    with serving_jobs(jobs) as base:
        models = httpx.get(f"{base}/api/config").json()["models"]
        assert all(m["denoise"] for m in models)
        results = {}
        for model, denoise in [("t-x2", ""), ("t-x2", "0"), ("t-x2-real", "1"), ("t-x2-real", "auto")]:
            r = post(base, photos / "a.png", model=model, denoise=denoise)
            assert r.status_code == 202, r.text
            done = wait(base, r.json()["id"])
            assert done["state"] == "done", done
            results[(model, denoise)] = httpx.get(f"{base}/api/jobs/{done['id']}/result").content
            if denoise == "auto":
                assert done["denoise"].startswith("denoise ") and "(auto:" in done["denoise"]
        assert results[("t-x2", "")] == results[("t-x2", "0")] != results[("t-x2-real", "1")]
