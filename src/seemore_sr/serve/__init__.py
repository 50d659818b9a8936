"""A local web app for upscaling: ``seemore serve`` (needs the ``[serve]`` extra).

The page and its API are in :mod:`.app`, the queue and worker in :mod:`.jobs`; both use
the same :class:`~seemore_sr.inference.upscaler.Upscaler` and file writer as the CLI.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import warnings

from ..errors import UsageError

__all__ = ["serve", "is_loopback"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    models: list[str],
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    device: str = "auto",
    max_pixels: int = 16_000_000,
    max_bytes: int = 64 << 20,
    max_queue: int = 8,
    log=print,
) -> None:
    """Load ``models`` (registry names or checkpoint paths), then serve the page until Ctrl-C."""
    try:
        import uvicorn

        from .app import create_app
        from .jobs import Jobs
    except ImportError as e:
        raise UsageError(
            f"seemore serve needs the web extra ({e.name} is not installed): pip install 'seemore-sr[serve]'"
        ) from None
    from pathlib import Path

    from ..inference.upscaler import resolve_device
    from ..models.hub import load_model

    resolve_device(device)  # a bad device or a busy port is refused before the models load
    _check_port(host, port)
    loaded = {}
    for m in models:
        name = Path(m).name if Path(m).suffix else m
        loaded[name] = load_model(m)
    if not is_loopback(host):
        warnings.warn(
            f"--host {host}: the server is reachable from other machines, and it has no login; "
            "anyone who reaches it can upscale on this machine",
            stacklevel=2,
        )
    jobs = Jobs(loaded, device=device, max_pixels=max_pixels, max_queue=max_queue)
    try:
        app = create_app(jobs, max_bytes=max_bytes, close_jobs=True, hosts=_served_names(host))
        shown = f"[{host}]" if ":" in host else host
        log(f"seemore serve: open http://{shown}:{port}/ (models: {', '.join(loaded)}; Ctrl-C stops)")
        sys.stdout.flush()
        # SIGTERM: stop listening, give open requests (uploads) 5 s, then exit anyway
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
    finally:
        jobs.close()


def _served_names(host: str) -> list[str]:
    """The host names a browser may use for this server (the Host header it must send)."""
    from .app import LOOPBACK_NAMES

    names = [*LOOPBACK_NAMES, host]
    if host in ("0.0.0.0", "::", ""):  # every interface: this machine's names and addresses
        names += [socket.gethostname(), socket.getfqdn()]
        try:
            names += [info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)]
        except socket.gaierror:
            pass
    return names


def _check_port(host: str, port: int) -> None:
    if not 0 < port < 65536:
        raise UsageError(f"--port {port}: not a port number (1-65535)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise UsageError(f"--host {host}: not an address of this machine ({e.strerror})") from None
    family, kind, _, _, addr = infos[0]
    with socket.socket(family, kind) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            raise UsageError(f"cannot listen on {host}:{port} ({e.strerror}); choose another --port") from None
