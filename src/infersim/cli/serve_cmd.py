"""`infersim serve RESULTS.duckdb [--host 127.0.0.1] [--port 8050]` (registered in cli/main.py):
the local dashboard (infersim/dashboard/). The results file is read once, read-only, before the
socket is bound; the socket is bound here (a port in use is one line, exit 2) and handed to
uvicorn, so nothing else can take the port in between."""
from __future__ import annotations

import errno
import socket
from pathlib import Path

import typer

from infersim.cli.common import err, out
from infersim.errors import InputError, shown

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8050


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one), or an InputError saying why not."""
    if not 0 <= port <= 65535:
        raise InputError(f"--port must be from 0 to 65535 (0: any free port); got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise InputError(f"--host '{shown(host)}' is not an address or a name this machine resolves") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a port in TIME_WAIT is free
    try:
        sock.bind(addr)
        sock.listen(128)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise InputError(f"port {port} on {host} is in use; stop what holds it or pick another with --port "
                             "(--port 0: any free port)") from None
        raise InputError(f"cannot listen on {host}:{port}: {e.strerror}; pick another --host or --port") from None
    return sock


def serve(results: Path = typer.Argument(..., help="results DuckDB file (infersim frontier --out / infersim sweep)"),
          host: str = typer.Option(DEFAULT_HOST, "--host", help="address to listen on (loopback by default)"),
          port: int = typer.Option(DEFAULT_PORT, "--port", help="TCP port (0: any free port)"),
          allow_remote: bool = typer.Option(False, "--allow-remote", help="allow a --host that is not loopback: "
                                            "anyone who can reach it sees the results and can run estimates")):
    """A local dashboard over a results file: pick model, workload, SLOs and families, see the
    report's figures update, run an estimate or a small frontier on demand. The results file is
    only read."""
    import uvicorn

    from infersim.dashboard.app import create_app, is_loopback
    from infersim.dashboard.state import Results
    remote = not is_loopback(host)
    if remote and not allow_remote:
        raise InputError(f"--host '{shown(host)}' is not a loopback address; the dashboard has no login, so serving "
                         "it beyond this machine needs --allow-remote")
    res = Results(results)
    sock = bind(host, port)
    if remote:
        err.print(f"warning: serving on {host}, beyond this machine: anyone who reaches it sees {results.name} and "
                  "can run estimates", markup=False, highlight=False)
    bound = sock.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    out.print(f"infersim dashboard on http://{shown_host}:{bound}/ (results {results}; Ctrl-C stops it)",
              markup=False, highlight=False)
    config = uvicorn.Config(create_app(res, allow_any_host=remote), log_level="warning", lifespan="on")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
