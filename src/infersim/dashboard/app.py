"""The dashboard's Starlette app: the page, a JSON API over one results file, and a fixed list of
static files (the page's script and style, and plotly.js from the installed plotly package, so
nothing is fetched from the network). Nothing else on disk is reachable: static files are looked
up by name in STATIC, not joined to a path.

Starlette (with uvicorn) rather than Flask: an ASGI app of a few routes with no template engine
or global request state; sync endpoints run in a thread pool, so an on-demand frontier does not
block the page's other requests.

Bad requests (unknown model, family or deployment, out-of-range numbers) are 400 with
{"error": one line}; the Host header must name the bound loopback address unless the server was
started for other hosts, so a web page elsewhere cannot reach it through DNS rebinding; POSTs take
JSON only, which a cross-site form cannot send without the browser asking first.
"""
from __future__ import annotations

import contextlib
import ipaddress
import logging
from pathlib import Path
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from infersim.dashboard.actions import (MAX_FRONTIER_BATCHES, MAX_FRONTIER_FAMILIES, Frontiers, deployment_choices,
                                        frontier_families, parse_optional_float, run_estimate, whole)
from infersim.dashboard.state import Results, Selection, finite_or_none
from infersim.errors import InputError, shown

HERE = Path(__file__).resolve().parent / "static"
LOG = logging.getLogger("infersim.dashboard")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


def plotly_js() -> Path:
    """plotly.js as bundled in the installed plotly package."""
    import plotly
    return Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"


STATIC = {"app.js": (lambda: HERE / "app.js", "text/javascript"),
          "app.css": (lambda: HERE / "app.css", "text/css"),
          "plotly.min.js": (plotly_js, "text/javascript")}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_of(header: str) -> str:
    """The host of a Host header, without its port ('[::1]:8050' -> '::1')."""
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class LoopbackHostOnly:
    """ASGI middleware: 400 for a request whose Host header is not a loopback name."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if not is_loopback(host_of(host)):
                await PlainTextResponse("Host not allowed", status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _json(obj, status: int = 200) -> JSONResponse:
    return JSONResponse(finite_or_none(obj), status_code=status)


def _secure(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Cache-Control"] = "no-store"
    return resp


def selection(results: Results, q) -> Selection:
    """The Selection a figures query asks for (model and workload default to the file's first model
    and its workload with the most rows)."""
    index = results.index()
    model = q.get("model") or index[0]["model"]
    mine = next((m for m in index if m["model"] == model), None)
    if mine is None:
        raise InputError(f"unknown model '{shown(model)}'; the results file holds "
                         f"{', '.join(m['model'] for m in index)}")
    if "input_len" in q:  # else the model's workload with the most rows
        workload = (whole(q.get("input_len"), "input_len", 10 ** 9), whole(q.get("output_len"), "output_len", 10 ** 9),
                    q.get("trace") or None)
    else:
        first = mine["workloads"][0]
        workload = (first["input_len"], first["output_len"], first["trace"])
    fams = q.get("families")
    return Selection(model, workload,
                     families=None if fams is None else tuple(f for f in fams.split(",") if f),
                     min_tok_s_per_user=parse_optional_float(q.get("min_tok_s_per_user"), "min_tok_s_per_user"),
                     max_ttft_s=parse_optional_float(q.get("max_ttft_s"), "max_ttft_s"))


def create_app(results: Results, allow_any_host: bool = False) -> Starlette:
    """The app over `results` (a Results already read). `allow_any_host`: serve a non-loopback Host
    header (the server was bound to a non-loopback address on purpose)."""
    frontiers = Frontiers()

    def page(request: Request):
        return _secure(FileResponse(HERE / "index.html", media_type="text/html"))

    def static(request: Request):
        found = STATIC.get(request.path_params["name"])
        if found is None:
            return PlainTextResponse("Not Found", status_code=404)
        path, media = found
        return _secure(FileResponse(path(), media_type=media))

    def options(request: Request):
        return _json({"results_file": str(results.path), "index": results.index(),
                      "limits": {"frontier_families": MAX_FRONTIER_FAMILIES,
                                 "frontier_batches": MAX_FRONTIER_BATCHES}})

    def figures(request: Request):
        return _json(results.figures(selection(results, request.query_params)))

    def deployments(request: Request):
        model = request.query_params.get("model", "")
        return _json([{"key": k, "label": v["label"], "source": v["source"]}
                      for k, v in deployment_choices(results, model).items()])

    def families(request: Request):
        return _json(list(frontier_families(request.query_params.get("model", ""))))

    async def estimate(request: Request):
        from starlette.concurrency import run_in_threadpool
        return _json(await run_in_threadpool(run_estimate, results, await _body(request)))

    async def frontier(request: Request):
        from starlette.concurrency import run_in_threadpool
        return _json(await run_in_threadpool(frontiers.run, await _body(request)))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            frontiers.close()

    async def input_error(request: Request, exc: InputError):
        return _json({"error": str(exc)}, 400)

    async def server_error(request: Request, exc: Exception):
        LOG.exception("dashboard request %s failed", request.url.path)
        return _json({"error": f"internal error: {type(exc).__name__}: {shown(exc)}"}, 500)

    routes = [Route("/", page), Route("/static/{name}", static), Route("/api/options", options),
              Route("/api/figures", figures), Route("/api/deployments", deployments),
              Route("/api/frontier-families", families), Route("/api/estimate", estimate, methods=["POST"]),
              Route("/api/frontier", frontier, methods=["POST"])]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={InputError: input_error, Exception: server_error})
    return app if allow_any_host else LoopbackHostOnly(app)


async def _body(request: Request) -> dict:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise InputError("send the request body as JSON (Content-Type: application/json)")
    import json
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise InputError("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InputError("the request body must be a JSON object")
    return body
