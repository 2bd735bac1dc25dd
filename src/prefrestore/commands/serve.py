# ruff: noqa: T201
"""`prefrestore serve`: the web page and HTTP API (needs ``pip install prefrestore[serve]``).

    prefrestore serve [--host 127.0.0.1] [--port 7860] [--model default] [--token T] [--workdir DIR]
        [--max-body-mb 25] [--max-pixels 40000000] [--max-queued 64] [--max-batch 8] [--job-timeout 300]
        [--result-ttl 600] [--max-uploads 16] [--max-uploads-per-client 4] [--read-timeout 60]
        [--min-upload-rate 16] [--allowed-host NAME ...] [--cors-origin URL ...] [--steps K] [--batch-size B]
        [--device cpu] [--identity auto|off]

Binds loopback by default; a --host whose address is not loopback (the name is resolved once and that address
is bound) needs --token (or $PREFRESTORE_TOKEN). Every option, the address and the port are checked, and the port
bound, before the model loads. The server writes only inside --workdir (default: a new temporary folder, removed
at exit).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import tempfile
from pathlib import Path

from ..errors import UserError


def _port(text: str) -> int:
    """``--port`` as argparse parses it: a bad port is a one-line error (exit 2) before anything is imported."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise UserError(f"--port {text[:20]}: must be a whole number in 1..65535, e.g. 7860")
    return port


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=_port, default=7860, help="port, 1..65535 (default: 7860)")
    parser.add_argument(
        "--token", default=None, help="bearer token required on /v1 (default: $PREFRESTORE_TOKEN; needed off loopback)"
    )
    parser.add_argument(
        "--workdir", default=None, help="the only folder the server writes to (default: a temp folder)"
    )
    parser.add_argument("--max-body-mb", type=float, default=25.0, help="largest request body, MiB (default: 25)")
    parser.add_argument("--max-pixels", type=int, default=40_000_000, help="largest photo, pixels (default: 40e6)")
    parser.add_argument("--max-queued", type=int, default=64, help="waiting jobs before 429 (default: 64)")
    parser.add_argument("--max-batch", type=int, default=8, help="queued photos restored together (default: 8)")
    parser.add_argument("--max-uploads", type=int, default=16, help="uploads read at once before 429 (default: 16)")
    parser.add_argument(
        "--max-uploads-per-client",
        type=int,
        default=4,
        help="uploads one client address may send at once before 429 (default: 4)",
    )
    parser.add_argument(
        "--read-timeout", type=float, default=60.0, help="seconds an upload may stall before 408 (default: 60)"
    )
    parser.add_argument(
        "--min-upload-rate",
        type=float,
        default=16.0,
        metavar="KIB_S",
        help="slowest upload accepted, KiB/s after a 5 s start; slower ones get 408 (default: 16)",
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests for this Host name (repeatable; .example.org: the domain and "
        "its subdomains; *: any). Default: loopback names; off loopback also IP addresses "
        "and this machine's name",
    )
    parser.add_argument("--job-timeout", type=float, default=300.0, help="seconds a job may take (default: 300)")
    parser.add_argument("--result-ttl", type=float, default=600.0, help="seconds results are kept (default: 600)")
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="URL",
        help="allow this origin by CORS (repeatable; default: CORS off)",
    )
    from ..restore import options

    options.add_arguments(parser, "serve")  # --model, --steps, --device, --batch-size, --identity


def check_arguments(args: argparse.Namespace) -> str | None:
    """The settings the server takes (``args.settings``), checked before anything runs -> a usage message or None."""
    from ..restore.options import RestoreSettings

    args.settings = RestoreSettings.from_namespace(args, "serve")  # a bad value: a SettingError, one line, exit 2
    return None


def run(args: argparse.Namespace) -> int:
    from ..serving.schemas import ServerSettings

    temp = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="prefrestore-serve-") if temp else args.workdir).resolve()
    sock = None
    try:
        settings = ServerSettings(
            workdir=workdir,
            host=args.host,
            port=args.port,
            max_body_bytes=int(args.max_body_mb * 1024 * 1024),
            max_pixels=args.max_pixels,
            max_queued=args.max_queued,
            max_batch=args.max_batch,
            max_uploads=args.max_uploads,
            max_uploads_per_client=args.max_uploads_per_client,
            read_timeout_s=args.read_timeout,
            min_upload_bytes_per_s=args.min_upload_rate * 1024,
            job_timeout_s=args.job_timeout,
            result_ttl_s=args.result_ttl,
            token=args.token or os.environ.get("PREFRESTORE_TOKEN") or None,
            cors_origins=tuple(args.cors_origin),
            allowed_hosts=tuple(args.allowed_host),
            restore=args.settings,
        )
        sock = _bind(settings)  # before the (slow) imports and the model: a taken port fails at once
        try:
            import uvicorn

            from ..serving.app import create_app
            from ..serving.runner import load_runner
        except ModuleNotFoundError as err:
            raise UserError(
                f"`prefrestore serve` needs {err.name}; install it with pip install 'prefrestore[serve]'"
            ) from None
    except BaseException:
        if sock is not None:
            sock.close()
        if temp:
            shutil.rmtree(workdir, ignore_errors=True)
        raise

    def remove_temp() -> None:  # from the app's shutdown: uvicorn re-raises SIGTERM after it, skipping `finally`
        if temp:
            shutil.rmtree(workdir, ignore_errors=True)

    app = create_app(
        settings,
        lambda: load_runner(args.settings),  # the pipeline of the server's settings (--model, --device, ...)
        on_shutdown=remove_temp,
    )
    host = f"[{args.host}]" if ":" in args.host else args.host
    bound = "" if settings.bind == args.host else f" (address {settings.bind})"
    print(f"prefrestore serving on http://{host}:{args.port}/{bound} (API docs: /docs; work folder {workdir})")
    try:
        # proxy_headers off: a client's X-Forwarded-For must not choose the address its upload slots count under
        uvicorn.Server(uvicorn.Config(app, log_level="warning", proxy_headers=False)).run(sockets=[sock])
    finally:
        sock.close()
        remove_temp()
    return 0


def _bind(settings) -> socket.socket:
    """A listening socket on the resolved bind address and the port; a one-line UserError when that fails."""
    family = socket.AF_INET6 if ":" in settings.bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((settings.bind, settings.port))
        sock.listen(2048)
    except OSError as err:
        sock.close()
        raise UserError(
            f"--host {settings.host} --port {settings.port}: cannot listen there "
            f"({err.strerror or err}); choose another --port or stop what uses it"
        ) from None
    sock.set_inheritable(True)
    return sock
