"""The web app's limits: it answers only its own page, bounds uploads,
cleans up after dead servers, and every error is JSON."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

pytest.importorskip("starlette")
import uvicorn  # noqa: E402

from seemore_sr import load_model  # noqa: E402
from seemore_sr.serve.app import create_app  # noqa: E402
from seemore_sr.serve.jobs import Jobs  # noqa: E402

PNG = Path(__file__).resolve().parents[1] / "src/seemore_sr/assets/sample.png"


@contextmanager
def served(small_model, tmp_path, **app_kwargs):
    jobs = Jobs({"small-x2": load_model(small_model)}, device="cpu", root=tmp_path / "tmp")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(jobs, **app_kwargs), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", jobs
    finally:
        server.should_exit = True
        thread.join(10)
        jobs.close()
        sock.close()


def job_folders(jobs):
    return [p for p in jobs.root.iterdir() if p.name.startswith("job-")] if jobs.root.exists() else []


def test_foreign_host_and_cross_site_requests_refused(small_model, tmp_path):
    with served(small_model, tmp_path) as (base, jobs):
        data = PNG.read_bytes()
        r = httpx.get(f"{base}/api/config", headers={"Host": "evil.example"})
        assert r.status_code == 400 and "unknown host" in r.json()["error"]  # DNS rebinding
        for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            r = httpx.post(f"{base}/api/jobs", params={"name": "a.png"}, content=data, headers=headers)
            assert r.status_code == 403 and "other sites" in r.json()["error"]
        assert jobs.jobs == {} and job_folders(jobs) == []
        r = httpx.post(f"{base}/api/jobs", params={"name": "a.png"}, content=data, headers={"Origin": base})
        assert r.status_code == 202  # the page itself (same origin), and tools without an Origin, may


def test_stalled_and_cut_uploads_are_dropped_with_their_files(small_model, tmp_path, capfd):
    with served(small_model, tmp_path, body_timeout=0.5, max_uploads=1) as (base, jobs):
        port = int(base.rsplit(":", 1)[1])
        stalled = socket.create_connection(("127.0.0.1", port))
        stalled.sendall(
            b"POST /api/jobs?name=a.png HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10
        )
        time.sleep(0.2)
        r = httpx.post(f"{base}/api/jobs", params={"name": "b.png"}, content=PNG.read_bytes())
        assert r.status_code == 503 and "uploads are open" in r.json()["error"]  # open uploads are counted
        stalled.settimeout(10)
        reply = b""
        while b"stalled" not in reply and (part := stalled.recv(4096)):
            reply += part
        assert " 408 " in reply.decode().splitlines()[0] and b"the upload stalled" in reply
        stalled.close()
        cut = socket.create_connection(("127.0.0.1", port))
        cut.sendall(b"POST /api/jobs?name=c.png HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\nxx")
        time.sleep(0.2)
        cut.close()
        time.sleep(0.5)
        assert jobs.jobs == {} and job_folders(jobs) == []
    err = capfd.readouterr().err
    assert "upload of a.png stalled; dropped" in err and "Traceback" not in err


def test_every_error_is_json(small_model, tmp_path, monkeypatch):
    with served(small_model, tmp_path) as (base, jobs):
        r = httpx.get(f"{base}/no/such/page")
        assert r.status_code == 404 and "error" in r.json()
        job = httpx.post(f"{base}/api/jobs", params={"name": "a.png"}, content=PNG.read_bytes()).json()
        monkeypatch.setattr(jobs, "position", lambda j: 1 / 0)
        r = httpx.get(f"{base}/api/jobs/{job['id']}")
        assert r.status_code == 500 and r.json()["error"].startswith("internal error: ZeroDivisionError")
        monkeypatch.undo()
        real_new = jobs.new

        def full_disk(name, settings):
            job = real_new(name, settings)
            job.folder.rmdir()  # writing the input fails, as on a full or vanished disk
            return job

        monkeypatch.setattr(jobs, "new", full_disk)
        r = httpx.post(f"{base}/api/jobs", params={"name": "b.png"}, content=PNG.read_bytes())
        assert r.status_code == 507 and "could not store the file" in r.json()["error"]


def test_deleted_temp_root_is_recreated(small_model, tmp_path):
    import shutil

    with served(small_model, tmp_path) as (base, jobs):
        shutil.rmtree(jobs.root)
        r = httpx.post(f"{base}/api/jobs", params={"name": "a.png"}, content=PNG.read_bytes())
        assert r.status_code == 202, r.text


def test_folders_of_dead_servers_removed_on_start(small_model, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / "tmp" / "seemore-serve-old"
    (stale / "job-1").mkdir(parents=True)
    (stale / "pid").write_text(dead.stdout)
    alive = tmp_path / "tmp" / "seemore-serve-alive"
    alive.mkdir()
    (alive / "pid").write_text(str(os.getpid()))
    jobs = Jobs({"small-x2": load_model(small_model)}, device="cpu", root=tmp_path / "tmp")
    try:
        assert not stale.exists() and alive.exists() and (jobs.root / "pid").read_text().strip() == str(os.getpid())
    finally:
        jobs.close()


@pytest.mark.slow
def test_sigterm_exits_within_bounds_with_an_upload_open(small_model, tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "seemore_sr", "serve", "--model", str(small_model), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert "open http" in proc.stdout.readline()
        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/config").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        conn = socket.create_connection(("127.0.0.1", port))
        conn.sendall(b"POST /api/jobs?name=a.png HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\nxx")
        time.sleep(0.3)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert time.monotonic() - start < 15  # it waited for the client before (201 s in the probe)
        conn.close()
        assert not list(tmp_path.glob("seemore-serve-*"))
    finally:
        proc.kill()
        proc.wait()
