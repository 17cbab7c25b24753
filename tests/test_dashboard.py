"""`infersim serve`'s app over a real uvicorn server on a loopback port (raw HTTP requests, so a
path is sent exactly as written: no client normalises `..`), its selection logic, and the
command's bad-input paths (one line, exit 2)."""
from __future__ import annotations

import hashlib
import http.client
import json
import socket
import threading
import time

import pytest
from typer.testing import CliRunner

from cli_checks import assert_fails_cleanly
from infersim.cli.main import app as cli
from infersim.cli.serve_cmd import bind
from infersim.dashboard.app import create_app, host_of, is_loopback
from infersim.dashboard.state import Results, Selection, meets_slo
from infersim.planner.frontier import run_frontier

MODEL = "nemotron-3-super"
FAMILIES = ["lpu-lpx", "gpu-vr-nvl72"]


@pytest.fixture(scope="module")
def results_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("dash") / "results.duckdb"
    run_frontier(MODEL, 2048, 256, batches=[1, 8, 64], only=FAMILIES, out=path, sensitivity=False)
    return path


@pytest.fixture(scope="module")
def server(results_file):
    """(host, port) of a uvicorn server running the dashboard in a thread; stopped after the module."""
    import uvicorn
    before = hashlib.sha256(results_file.read_bytes()).hexdigest()
    sock = bind("127.0.0.1", 0)
    srv = uvicorn.Server(uvicorn.Config(create_app(Results(results_file)), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "the dashboard did not start within 15 s"
    yield sock.getsockname()[:2]
    srv.should_exit = True
    thread.join(timeout=10)
    sock.close()
    # the user's results file is never written, whatever was asked
    assert hashlib.sha256(results_file.read_bytes()).hexdigest() == before


def request(server, path: str, method: str = "GET", body=None, headers=None):
    host, port = server
    con = http.client.HTTPConnection(host, port, timeout=30)
    try:
        hdrs = {"Host": f"127.0.0.1:{port}", **(headers or {})}
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        con.request(method, path, body=data, headers=hdrs)
        resp = con.getresponse()
        return resp.status, resp.read(), dict(resp.getheaders())
    finally:
        con.close()


def api(server, path, body=None):
    status, data, _ = request(server, path, "GET" if body is None else "POST", body)
    return status, json.loads(data)


TRAVERSALS = ["/static/../../etc/passwd", "/static/..%2f..%2fetc%2fpasswd", "/static/%2e%2e/%2e%2e/etc/passwd",
              "/static/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/static/..%5c..%5cetc%5cpasswd",
              "/static/%252e%252e%252fetc%252fpasswd", "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
              "/static//etc/passwd", "/static/app.js/../../../../etc/passwd", "/static/%2fetc%2fpasswd",
              "/static/..", "/static/.", "/static/index.html", "/static/__init__.py", "/api/../app.py",
              "/static/app.js%00.css"]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_nothing_outside_the_results_and_static_files_is_served(server, path):
    status, body, _ = request(server, path)
    assert status in (400, 404), (path, status)
    assert b"root:" not in body and b"import" not in body


def test_static_files_are_the_fixed_list(server):
    status, body, headers = request(server, "/static/plotly.min.js")
    assert status == 200 and len(body) > 1_000_000 and b"plotly" in body[:2000].lower()
    status, body, headers = request(server, "/")
    assert status == 200 and b"/static/plotly.min.js" in body
    assert "default-src 'self'" in headers["content-security-policy"]  # no script from elsewhere


def test_a_foreign_host_header_is_refused(server):
    status, _, _ = request(server, "/api/options", headers={"Host": "attacker.example:8050"})
    assert status == 400
    assert is_loopback(host_of("[::1]:8050")) and is_loopback(host_of("localhost:1")) and not is_loopback("10.0.0.1")


def test_options_list_the_stored_models_workloads_and_families(server, results_file):
    from infersim.reports.data import read_results
    deployments = {r["deployment"] for r in read_results(results_file)}
    status, opts = api(server, "/api/options")
    assert status == 200
    (entry,) = opts["index"]
    assert entry["model"] == MODEL
    (w,) = entry["workloads"]
    assert (w["input_len"], w["output_len"], w["trace"]) == (2048, 256, None)
    assert w["rows"] == 3 * len(deployments)  # every deployment at 3 batches
    assert sorted(w["families"]) == sorted(FAMILIES)


def points(fig) -> int:
    return sum(len(t["x"]) for t in fig["plotly"]["data"])


def test_slo_and_family_choices_narrow_the_figures(server, results_file):
    q = f"/api/figures?model={MODEL}&input_len=2048&output_len=256"
    _, full = api(server, q)
    mw = next(f for f in full["figures"] if f["key"] == "frontier-mw")
    speeds = sorted(x for t in mw["plotly"]["data"] if t["mode"] == "markers" for x in t["x"])
    threshold = speeds[len(speeds) // 2]
    _, slo = api(server, q + f"&min_tok_s_per_user={threshold}")
    mw_slo = next(f for f in slo["figures"] if f["key"] == "frontier-mw")
    below = sum(1 for s in speeds if s < threshold)
    assert slo["slo_left_out"] == below > 0
    assert all(x >= threshold for t in mw_slo["plotly"]["data"] for x in t["x"])
    assert any("SLO" in n and f"{below} configurations" in n for n in mw_slo["spec"]["notes"])
    _, one = api(server, q + "&families=lpu-lpx")
    groups = {t["legendgroup"] for f in one["figures"] if f["plotly"] for t in f["plotly"]["data"]}
    # figures of the results group by family (the validation figures group by band and hardware)
    assert groups & set(FAMILIES) == {"lpu-lpx"} and "gpu-vr-nvl72" not in groups
    # a family keeps its colour whatever else is shown
    colour = {t["legendgroup"]: t["marker"]["color"] for t in mw["plotly"]["data"]}
    assert {t["marker"]["color"] for t in one["figures"][0]["plotly"]["data"]} == {colour["lpu-lpx"]}
    status, _ = api(server, q + "&max_ttft_s=0")  # nothing meets it: figures say why, no error
    assert status == 200


@pytest.mark.parametrize("query, words", [("model=nope", "unknown model"), ("families=nope", "unknown family"),
                                          ("min_tok_s_per_user=fast", "must be a number"),
                                          ("max_ttft_s=-1", "at least 0"),
                                          ("input_len=7&output_len=3", "no rows")])
def test_bad_figure_queries_are_400_with_a_reason(server, query, words):
    status, body = api(server, "/api/figures?" + query)
    assert status == 400 and words in body["error"]


def test_estimate_of_a_stored_deployment_matches_its_row(server, results_file):
    from infersim.reports.data import read_results
    row = next(r for r in read_results(results_file) if r["status"] == "ok" and r["batch"] == 8)
    status, got = api(server, "/api/estimate", {"model": MODEL, "deployment": f"stored:{row['deployment']}",
                                                "batch": 8, "input_len": 2048, "output_len": 256})
    assert status == 200 and got["status"] == "ok"
    assert got["tok_s_per_user"] == pytest.approx(row["tok_s_per_user"], rel=1e-9)  # same configuration, same answer


@pytest.mark.parametrize("body, words", [
    ({"model": MODEL, "deployment": "/etc/passwd", "batch": 1, "input_len": 1, "output_len": 1}, "unknown deployment"),
    ({"model": MODEL, "deployment": "stored:lpu-lpx", "batch": 1, "input_len": 1, "output_len": 1}, "unknown"),
    ({"model": MODEL, "batch": 0, "input_len": 1, "output_len": 1}, "batch must be from 1"),
    ({"model": MODEL, "batch": "8; rm", "input_len": 1, "output_len": 1}, "whole number"),
    ({"model": MODEL, "batch": 1, "input_len": 1, "output_len": 10 ** 7}, "output_len must be from 1"),
])
def test_bad_estimates_are_400(server, results_file, body, words):
    from infersim.reports.data import read_results
    body.setdefault("deployment", "stored:" + read_results(results_file)[0]["deployment"])
    status, got = api(server, "/api/estimate", body)
    assert status == 400 and (words is None or words in got["error"]), got


def test_posts_take_json_only(server):
    status, body, _ = request(server, "/api/estimate", "POST", b"model=x", {"Content-Type": "text/plain"})
    assert status == 400 and b"JSON" in body
    status, body, _ = request(server, "/api/estimate", "POST", b"{not json")
    assert status == 400


def test_an_on_demand_frontier_is_drawn_and_bounded(server):
    req = {"model": MODEL, "families": ["cs3"], "batches": [1, 8], "input_len": 1024, "output_len": 128}
    status, got = api(server, "/api/frontier", req)
    assert status == 200 and got["screened"] > 0
    assert got["header"]["results file"] != ""
    assert any(f["plotly"] for f in got["figures"])
    for bad in ({"families": ["cs3", "lpu-lpx", "gpu-vr-nvl72"]}, {"families": ["nope"]},
                {"batches": list(range(1, 20))}, {"input_len": 0}):
        status, got = api(server, "/api/frontier", {**req, **bad})
        assert status == 400, bad


def test_slo_golden_cases():
    sel = Selection(MODEL, (1, 1, None), min_tok_s_per_user=50.0, max_ttft_s=2.0)
    assert meets_slo({"tok_s_per_user": 50.0, "ttft_s": 2.0}, sel)
    assert not meets_slo({"tok_s_per_user": 49.9, "ttft_s": 1.0}, sel)
    assert not meets_slo({"tok_s_per_user": 80.0, "ttft_s": 2.1}, sel)
    assert not meets_slo({"tok_s_per_user": 80.0, "ttft_s": None}, sel)  # unknown TTFT does not meet a bound
    assert meets_slo({"tok_s_per_user": 80.0, "ttft_s": None}, Selection(MODEL, (1, 1, None)))


# ------------------------------------------------------------------ the command's bad input

runner = CliRunner()


def test_serve_refuses_a_missing_file(tmp_path):
    line = assert_fails_cleanly(runner.invoke(cli, ["serve", str(tmp_path / "none.duckdb")]))
    assert "does not exist" in line


def test_serve_refuses_a_foreign_or_empty_or_old_file(tmp_path):
    import duckdb
    from infersim.sweep.store import ResultStore
    foreign = tmp_path / "foreign.duckdb"
    con = duckdb.connect(str(foreign))
    con.execute("create table t(x int)")
    con.close()
    assert "something else" in assert_fails_cleanly(runner.invoke(cli, ["serve", str(foreign)]))
    empty = tmp_path / "empty.duckdb"
    ResultStore(empty).close()
    assert "no results rows" in assert_fails_cleanly(runner.invoke(cli, ["serve", str(empty)]))
    columns = tmp_path / "columns.duckdb"
    con = duckdb.connect(str(columns))
    con.execute("create table infersim_meta(key varchar, value varchar)")
    con.execute("insert into infersim_meta values ('schema_version', '2')")
    con.execute("create table results(config_id varchar, model varchar)")
    con.close()
    assert "other columns" in assert_fails_cleanly(runner.invoke(cli, ["serve", str(columns)]))


def test_serve_refuses_a_port_in_use(results_file):
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    try:
        port = held.getsockname()[1]
        line = assert_fails_cleanly(runner.invoke(cli, ["serve", str(results_file), "--port", str(port)]))
        assert f"port {port}" in line and "in use" in line
    finally:
        held.close()


def test_serve_needs_a_flag_to_listen_beyond_loopback(results_file):
    line = assert_fails_cleanly(runner.invoke(cli, ["serve", str(results_file), "--host", "0.0.0.0"]))
    assert "--allow-remote" in line
    assert "from 0 to 65535" in assert_fails_cleanly(runner.invoke(cli, ["serve", str(results_file), "--port", "70000"]))


def test_rows_written_after_start_appear_without_a_restart(tmp_path, results_file):
    import shutil
    path = tmp_path / "growing.duckdb"
    shutil.copy(results_file, path)
    res = Results(path)
    before = {(w["input_len"], w["output_len"]) for m in res.index() for w in m["workloads"]}
    assert res.refresh() is False  # unchanged file: nothing re-read
    run_frontier(MODEL, 1024, 128, batches=[1], only=["gpu-vr-nvl72"], out=path, sensitivity=False)
    after = {(w["input_len"], w["output_len"]) for m in res.index() for w in m["workloads"]}
    assert after == before | {(1024, 128)}
