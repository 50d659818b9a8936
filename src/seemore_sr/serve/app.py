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

Errors are JSON ``{"error": message}``, the message written for the person at the page.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager
from importlib import resources

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .jobs import PRECISIONS, Busy, Job, Jobs, Settings

__all__ = ["create_app"]

TILES = ["auto", "0", "128", "256", "512"]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class _TooLarge(ValueError):
    """An upload over the byte limit (HTTP 413)."""


def create_app(jobs: Jobs, *, max_bytes: int = 64 << 20, close_jobs: bool = False) -> Starlette:
    """The web app over ``jobs``. ``close_jobs``: the app closes ``jobs`` (stops the worker,
    removes every file) when the server shuts down; else the caller does."""
    static = resources.files("seemore_sr.serve") / "static"
    models = list(jobs.models)

    async def index(request: Request) -> Response:
        return FileResponse(str(static / "index.html"), headers={"Cache-Control": "no-cache"})

    async def config(request: Request) -> Response:
        return JSONResponse(
            {
                "models": [{"name": m, "scale": jobs.models[m].config.scale} for m in models],
                "precisions": list(PRECISIONS),
                "tiles": TILES,
                "formats": ["", "png", "jpg", "webp", "tiff"],
                "max_bytes": max_bytes,
                "max_pixels": jobs.max_pixels,
                "max_queue": jobs.max_queue,
            }
        )

    async def submit(request: Request) -> Response:
        query = dict(request.query_params)
        try:
            settings = Settings.parse(query, models)
            length = int(request.headers.get("content-length") or 0)
            if length > max_bytes:
                return _error(413, f"the file is {length / 2**20:.1f} MB, over this server's {_mb(max_bytes)} limit")
            job = jobs.new(query.get("name", ""), settings)
        except Busy as e:
            return _error(503, str(e))
        except ValueError as e:
            return _error(400, str(e))
        size = 0
        try:
            with job.src.open("wb") as f:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > max_bytes:
                        raise _TooLarge(f"the file is over this server's {_mb(max_bytes)} limit")
                    f.write(chunk)
        except BaseException as e:  # too large, or the client went away mid-upload
            jobs.discard(job)
            if isinstance(e, _TooLarge):
                return _error(413, f"{job.name}: {e}")
            raise
        try:
            await run_in_threadpool(jobs.submit, job)  # a refused job is discarded there
        except Busy as e:
            return _error(503, str(e))
        except ValueError as e:
            return _error(400, f"{job.name}: {e}")
        return JSONResponse({"id": job.id, **job.view(jobs.position(job))}, status_code=202)

    def with_job(handler):
        """A route on ``/api/jobs/{job}``: the job looked up, or 404."""

        async def route(request: Request) -> Response:
            job = jobs.get(request.path_params["job"])
            if job is None:
                return _error(404, "no such job (finished results are kept for a while, then removed)")
            return await handler(request, job)

        return route

    @with_job
    async def status(request: Request, job: Job) -> Response:
        return JSONResponse(job.view(jobs.position(job)))

    @with_job
    async def events(request: Request, job: Job) -> Response:
        async def stream():
            job.watchers += 1
            try:
                last = None
                while True:
                    job.seen = time.monotonic()
                    view = job.view(jobs.position(job))
                    if view != last:
                        yield f"data: {json.dumps(view)}\n\n"
                        last = view
                    if job.over:
                        return
                    await asyncio.sleep(0.1)
            finally:
                job.watchers -= 1

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @with_job
    async def result(request: Request, job: Job) -> Response:
        if job.state != "done" or job.result is None:
            return _error(409, f"the job is {job.state}, there is no result")
        return FileResponse(str(job.result), filename=job.result.name)

    @with_job
    async def preview(request: Request, job: Job) -> Response:
        path = job.preview.get(request.path_params["which"])
        if job.state != "done" or path is None:
            return _error(404, "no preview for this job")
        return FileResponse(str(path))

    @with_job
    async def cancel(request: Request, job: Job) -> Response:
        jobs.cancel(job)
        return JSONResponse(job.view())

    @with_job
    async def delete(request: Request, job: Job) -> Response:
        jobs.discard(job)
        return Response(status_code=204)

    routes = [
        Route("/", index),
        Route("/api/config", config),
        Route("/api/jobs", submit, methods=["POST"]),
        Route("/api/jobs/{job}", status, methods=["GET"]),
        Route("/api/jobs/{job}", delete, methods=["DELETE"]),
        Route("/api/jobs/{job}/events", events),
        Route("/api/jobs/{job}/result", result),
        Route("/api/jobs/{job}/preview/{which}", preview),
        Route("/api/jobs/{job}/cancel", cancel, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(static)), name="static"),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        if close_jobs:  # here, not after uvicorn.run: uvicorn re-raises SIGTERM once it has stopped
            await run_in_threadpool(jobs.close)

    return Starlette(routes=routes, lifespan=lifespan)


def _mb(n: int) -> str:
    return f"{n / 2**20:g} MB"
