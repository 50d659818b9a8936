"""``seemore serve``: a small Starlette app over :class:`~seemore_sr.serve.jobs.Jobs`.

The page (``static/``) is plain HTML, CSS and JavaScript in the package: nothing is fetched
from outside, so it works with no network. The API it uses:

- ``GET  /api/config``: the models, precisions, tile choices and limits;
- ``POST /api/jobs?name=&model=&precision=&tile=&format=`` with the image file as the body:
  ``{"id": ...}``, or an error (400 bad settings or file, 413 too big, 503 queue full);
- ``GET  /api/jobs/{id}``: the job's state, progress, result or error;
- ``GET  /api/jobs/{id}/events``: the same, as server-sent events until the job is over;
  while it is open the job is watched (a closed tab drops it, and the job stops);
- ``GET  /api/jobs/{id}/result``: the output file, as ``seemore upscale`` writes it;
- ``GET  /api/jobs/{id}/preview/{input|output}``: the image as a browser can show it;
- ``POST /api/jobs/{id}/cancel`` (the page's beacon when it closes), ``DELETE /api/jobs/{id}``.

Errors are JSON ``{"error": message}``, the message written for the person at the page;
an unexpected failure too (500, its one-line reason), never a plain-text page.

Only this page may use the API: a request whose ``Host`` is not a name the server serves
(the loopback names, or ``--host``) gets 400 (DNS rebinding), and a state-changing request
from another origin (``Origin`` / ``Sec-Fetch-Site``) gets 403, so a web page the user
visits cannot fill the queue. Uploads are bounded: at most ``max_uploads`` at once, each
body chunk within ``body_timeout`` seconds (a stalled upload is dropped with its file).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .jobs import PRECISIONS, Busy, Job, Jobs, Settings, denoise_pair

__all__ = ["create_app"]

TILES = ["auto", "0", "128", "256", "512"]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class _TooLarge(ValueError):
    """An upload over the byte limit (HTTP 413)."""


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def _host_name(value: str) -> str:
    """``host[:port]`` or ``[v6]:port`` -> the host name, lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class _SameSiteOnly:
    """ASGI middleware: the Host must be one of ``hosts``; state-changing requests must come
    from the page itself (same origin), not from another site."""

    def __init__(self, app, hosts: Iterable[str]) -> None:
        self.app, self.hosts = app, {h.lower().strip("[]") for h in hosts}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        refusal = None
        if _host_name(host) not in self.hosts:
            refusal = _error(400, f"unknown host {host!r}: this server answers only to {', '.join(sorted(self.hosts))}")
        elif scope["method"] in UNSAFE_METHODS:
            origin = headers.get("origin")
            cross = headers.get("sec-fetch-site") in ("cross-site", "same-site")
            if cross or (origin is not None and origin.split("://", 1)[-1].lower() != host.lower()):
                refusal = _error(403, "requests from other sites are refused; use the page this server serves")
        if refusal is not None:
            return await refusal(scope, receive, send)
        return await self.app(scope, receive, send)


class _Api:
    """The API's handlers over one :class:`Jobs` (the routes: the module docstring)."""

    def __init__(self, jobs: Jobs, *, max_bytes: int, max_uploads: int, body_timeout: float) -> None:
        self.jobs, self.models = jobs, list(jobs.models)
        self.max_bytes, self.max_uploads, self.body_timeout = max_bytes, max_uploads, body_timeout
        self.uploads = 0  # open upload bodies (the event loop's thread only)

    def routes(self) -> list[Route]:
        job = self._with_job
        return [
            Route("/api/config", self.config),
            Route("/api/jobs", self.submit, methods=["POST"]),
            Route("/api/jobs/{job}", job(self.status), methods=["GET"]),
            Route("/api/jobs/{job}", job(self.delete), methods=["DELETE"]),
            Route("/api/jobs/{job}/events", job(self.events)),
            Route("/api/jobs/{job}/result", job(self.result)),
            Route("/api/jobs/{job}/preview/{which}", job(self.preview)),
            Route("/api/jobs/{job}/cancel", job(self.cancel), methods=["POST"]),
        ]

    async def config(self, request: Request) -> Response:
        models = [
            {"name": m, "scale": self.jobs.models[m].config.scale, "denoise": denoise_pair(m, self.models) is not None}
            for m in self.models
        ]
        return JSONResponse(
            {
                "models": models,
                "precisions": list(PRECISIONS),
                "tiles": TILES,
                "formats": ["", "png", "jpg", "webp", "tiff"],
                "max_bytes": self.max_bytes,
                "max_pixels": self.jobs.max_pixels,
                "max_queue": self.jobs.max_queue,
            }
        )

    async def submit(self, request: Request) -> Response:
        """A new job: its settings checked, its body stored, then queued (202 with its view)."""
        query = dict(request.query_params)
        if self.uploads >= self.max_uploads:
            return _error(503, f"{self.uploads} uploads are open already; try again in a moment")
        try:
            settings = Settings.parse(query, self.models)
            length = int(request.headers.get("content-length") or 0)
            if length > self.max_bytes:
                return _error(
                    413, f"the file is {length / 2**20:.1f} MB, over this server's {_mb(self.max_bytes)} limit"
                )
            job = self.jobs.new(query.get("name", ""), settings)
        except Busy as e:
            return _error(503, str(e))
        except ValueError as e:
            return _error(400, str(e))
        refused = await self._store(request, job)
        if refused is not None:
            return refused
        try:
            await run_in_threadpool(self.jobs.submit, job)  # a refused job is discarded there
        except Busy as e:
            return _error(503, str(e))
        except ValueError as e:
            return _error(400, f"{job.name}: {e}")
        return JSONResponse({"id": job.id, **job.view(self.jobs.position(job))}, status_code=202)

    async def _store(self, request: Request, job: Job) -> Response | None:
        """The upload's body into the job's file; on any failure the job is dropped (with its
        file) and the error answer returned."""
        self.uploads += 1
        try:
            await _receive(request, job.src, self.max_bytes, self.body_timeout)
            return None
        except _TooLarge as e:
            self.jobs.discard(job)
            return _error(413, f"{job.name}: {e}")
        except (asyncio.TimeoutError, ClientDisconnect) as e:
            self.jobs.discard(job)
            why = "stalled" if isinstance(e, asyncio.TimeoutError) else "was cut off by the client"
            print(f"seemore serve: upload of {job.name} {why}; dropped", file=sys.stderr)
            return _error(408 if isinstance(e, asyncio.TimeoutError) else 400, f"{job.name}: the upload {why}")
        except OSError as e:  # a full or vanished temporary folder
            self.jobs.discard(job)
            return _error(507, f"{job.name}: the server could not store the file ({e.strerror or e})")
        except BaseException:
            self.jobs.discard(job)
            raise
        finally:
            self.uploads -= 1

    def _with_job(self, handler):
        """A route on ``/api/jobs/{job}``: the job looked up, or 404."""

        async def route(request: Request) -> Response:
            job = self.jobs.get(request.path_params["job"])
            if job is None:
                return _error(404, "no such job (finished results are kept for a while, then removed)")
            return await handler(request, job)

        return route

    async def status(self, request: Request, job: Job) -> Response:
        return JSONResponse(job.view(self.jobs.position(job)))

    async def events(self, request: Request, job: Job) -> Response:
        return StreamingResponse(
            self._stream(job), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    async def _stream(self, job: Job):
        """The job's view as server-sent events, each change once, until the job is over; the
        job counts as watched while the stream is open."""
        job.watchers += 1
        try:
            last = None
            while True:
                job.seen = time.monotonic()
                over = job.over  # read before the view: the last event sent is the job's final state
                view = job.view(self.jobs.position(job))
                if view != last:
                    yield f"data: {json.dumps(view)}\n\n"
                    last = view
                if over:
                    return
                await asyncio.sleep(0.1)
        finally:
            job.watchers -= 1

    async def result(self, request: Request, job: Job) -> Response:
        if job.state != "done" or job.result is None:
            return _error(409, f"the job is {job.state}, there is no result")
        return FileResponse(str(job.result), filename=job.result.name)

    async def preview(self, request: Request, job: Job) -> Response:
        path = job.preview.get(request.path_params["which"])
        if job.state != "done" or path is None:
            return _error(404, "no preview for this job")
        return FileResponse(str(path))

    async def cancel(self, request: Request, job: Job) -> Response:
        self.jobs.cancel(job)
        return JSONResponse(job.view())

    async def delete(self, request: Request, job: Job) -> Response:
        self.jobs.discard(job)
        return Response(status_code=204)


async def _not_found(request: Request, exc: Exception) -> Response:
    return _error(getattr(exc, "status_code", 404), getattr(exc, "detail", None) or "not found")


async def _failed(request: Request, exc: Exception) -> Response:
    print(f"seemore serve: {request.method} {request.url.path}: {type(exc).__name__}: {exc}", file=sys.stderr)
    return _error(500, f"internal error: {type(exc).__name__}: {exc}")


def create_app(
    jobs: Jobs,
    *,
    max_bytes: int = 64 << 20,
    close_jobs: bool = False,
    hosts: Iterable[str] = LOOPBACK_NAMES,
    max_uploads: int = 4,
    body_timeout: float = 30.0,
):
    """The web app over ``jobs``. ``close_jobs``: the app closes ``jobs`` (stops the worker,
    removes every file) when the server shuts down; else the caller does. ``hosts``: the
    host names it answers to (module docstring)."""
    static = resources.files("seemore_sr.serve") / "static"
    api = _Api(jobs, max_bytes=max_bytes, max_uploads=max_uploads, body_timeout=body_timeout)

    async def index(request: Request) -> Response:
        return FileResponse(str(static / "index.html"), headers={"Cache-Control": "no-cache"})

    @asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        if close_jobs:  # here, not after uvicorn.run: uvicorn re-raises SIGTERM once it has stopped
            await run_in_threadpool(jobs.close)

    routes = [Route("/", index), *api.routes(), Mount("/static", StaticFiles(directory=str(static)), name="static")]
    handlers = {HTTPException: _not_found, Exception: _failed}
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
    return _SameSiteOnly(app, hosts)


async def _receive(request: Request, dst: Path, max_bytes: int, timeout: float) -> None:
    """Stream the request's body into ``dst``: ``_TooLarge`` past ``max_bytes``,
    ``asyncio.TimeoutError`` when no chunk comes for ``timeout`` seconds."""
    size = 0
    with dst.open("wb") as f:
        body = request.stream().__aiter__()
        while True:
            try:
                chunk = await asyncio.wait_for(body.__anext__(), timeout)
            except StopAsyncIteration:
                return
            size += len(chunk)
            if size > max_bytes:
                raise _TooLarge(f"the file is over this server's {_mb(max_bytes)} limit")
            f.write(chunk)


def _mb(n: int) -> str:
    return f"{n / 2**20:g} MB"
