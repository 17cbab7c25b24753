"""End to end in a real browser (headless Chromium through Selenium, Debian's `chromium` and
`chromium-driver`, installed with apt-get under CI when missing): the HTML report written by `infersim report` and the
running `infersim serve` dashboard load with no console errors, every figure is drawn with data,
and a control changes a figure. Also the PNG export: files of some size with more than one colour.

The driver is started from explicit paths (Selenium Manager never downloads anything); every wait
is bounded and the dashboard's server process is always stopped."""
from __future__ import annotations

import os
import selectors
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infersim.cli.main import app as cli
from infersim.planner.frontier import run_frontier

MODEL = "nemotron-3-super"
FAMILIES = ["lpu-lpx", "gpu-vr-nvl72"]
WAIT_S = 20
INSTALL = ("Debian's chromium and chromium-driver are not installed (under CI=true as root the tests install "
           "them with apt-get; elsewhere run `apt-get install chromium chromium-driver`)")
APT_TIMEOUT_S = 900


def _install_under_ci() -> None:
    """Under CI (CI=true, root, apt-get present) install Debian's chromium and chromium-driver:
    the README's test command is all CI runs, so the browser comes with the tests that need it.
    Never on a developer's machine unasked; a failure leaves the tests to skip, saying why."""
    if os.environ.get("CI") != "true" or os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium", "chromium-driver"]):
        try:
            if subprocess.run(cmd, env=env, capture_output=True, timeout=APT_TIMEOUT_S).returncode != 0:
                return
        except (OSError, subprocess.TimeoutExpired):
            return


def _binary(*names: str):
    for n in names:
        found = shutil.which(n) or (f"/usr/bin/{n}" if os.access(f"/usr/bin/{n}", os.X_OK) else None)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser():
    chromium, driver_path = _binary("chromium", "chromium-browser"), _binary("chromedriver")
    if not chromium or not driver_path:
        _install_under_ci()
        chromium, driver_path = _binary("chromium", "chromium-browser"), _binary("chromedriver")
    if not chromium or not driver_path:
        pytest.skip(INSTALL)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1600",
                "--no-first-run", "--disable-extensions", "--allow-file-access-from-files"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    drv.set_page_load_timeout(WAIT_S)
    drv.set_script_timeout(WAIT_S)
    try:
        yield drv
    finally:
        drv.quit()


@pytest.fixture(scope="module")
def results_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("browser") / "results.duckdb"
    run_frontier(MODEL, 2048, 256, batches=[1, 8, 64], only=FAMILIES, out=path, sensitivity=False)
    return path


def severe(drv) -> list[str]:
    return [e["message"] for e in drv.get_log("browser") if e["level"] == "SEVERE"]


def wait_for(drv, script: str, what: str):
    """Poll a JS expression until it is truthy (at most WAIT_S); returns its value."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        got = drv.execute_script(f"return ({script});")
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out after {WAIT_S} s waiting for {what}")


PLOTS = "[...document.querySelectorAll('.js-plotly-plot')]"
# per drawn figure: [its id, traces, points]
DRAWN = f"{PLOTS}.map(d => [d.id, d.data.length, d.data.reduce((n, t) => n + (t.x ? t.x.length : 0), 0)])"


def test_the_report_opens_offline_with_every_figure_drawn(browser, results_file, tmp_path):
    out = tmp_path / "report.html"
    r = CliRunner().invoke(cli, ["report", str(results_file), "--out", str(out)])
    assert r.exit_code == 0, r.output
    browser.get(out.as_uri())
    wait_for(browser, "document.readyState === 'complete'", "the report to load")
    sections = browser.execute_script("return document.querySelectorAll('section.figure').length")
    empty = browser.execute_script("return document.querySelectorAll('[data-empty]').length")
    drawn = wait_for(browser, f"{PLOTS}.length === {sections - empty} && {DRAWN}", "every figure to be drawn")
    assert sections > empty and len(drawn) == sections - empty
    assert all(traces > 0 and pts > 0 for _, traces, pts in drawn), drawn
    # a control changes a figure: a legend click hides that family's traces
    plot = browser.find_element("id", drawn[0][0])
    hidden = f"document.getElementById('{drawn[0][0]}').data.filter(t => t.visible === 'legendonly').length"
    assert browser.execute_script(f"return {hidden}") == 0
    plot.find_element("css selector", ".legend .traces .legendtoggle").click()
    assert wait_for(browser, f"{hidden} > 0", "a legend click to hide a family") > 0
    assert severe(browser) == []


def _start_server(results_file):
    """`infersim serve --port 0` in a subprocess; (process, url) once it prints where it listens."""
    proc = subprocess.Popen([sys.executable, "-m", "infersim", "serve", str(results_file), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ})
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline, lines = time.monotonic() + WAIT_S, []
    while time.monotonic() < deadline and proc.poll() is None:
        if sel.select(timeout=0.2):
            line = proc.stdout.readline()
            lines.append(line)
            if "http://127.0.0.1:" in line:
                url = line.split("http://", 1)[1].split("/", 1)[0]
                return proc, f"http://{url}/"
    proc.kill()
    proc.wait(timeout=10)
    raise AssertionError(f"infersim serve did not start within {WAIT_S} s: {''.join(lines)}")


def _stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def test_the_dashboard_draws_and_a_control_changes_a_figure(browser, results_file):
    proc, url = _start_server(results_file)
    try:
        browser.get(url)
        renders = "Number(document.body.dataset.renders)"
        wait_for(browser, f"{renders} >= 1 && document.body.dataset.state === 'ready'", "the dashboard's figures")
        drawn = wait_for(browser, DRAWN, "drawn figures")
        sections = browser.execute_script("return document.querySelectorAll('#figures section.figure').length")
        empty = browser.execute_script("return document.querySelectorAll('#figures [data-empty]').length")
        assert len(drawn) == sections - empty > 0 and all(t > 0 and p > 0 for _, t, p in drawn), drawn
        plot = "document.getElementById('plot-main-frontier-mw')"
        points = f"{plot}.data.reduce((n, t) => n + t.x.length, 0)"
        speeds = sorted(browser.execute_script(f"return {plot}.data.flatMap(t => t.x)"))
        before = browser.execute_script(f"return {points}")
        # SLO: a minimum tok/s per user above the slowest point removes points from the figure
        done = browser.execute_script(f"return {renders}")
        browser.find_element("id", "min-tok-s").send_keys(str(speeds[len(speeds) // 2]))
        wait_for(browser, f"{renders} > {done} && document.body.dataset.state === 'ready'", "the SLO redraw")
        after = browser.execute_script(f"return {points}")
        assert 0 < after < before
        # a family toggle removes that family's traces
        done = browser.execute_script(f"return {renders}")
        browser.find_element("css selector", ".family-toggle[data-family='lpu-lpx']").click()
        wait_for(browser, f"{renders} > {done} && document.body.dataset.state === 'ready'", "the family redraw")
        groups = browser.execute_script(f"return {plot}.data.map(t => t.legendgroup)")
        assert groups and "lpu-lpx" not in groups
        # an estimate on demand
        browser.find_element("id", "est-run").click()
        wait_for(browser, "document.querySelectorAll('#est-result tr').length > 0", "the estimate's result")
        assert severe(browser) == []
    finally:
        _stop(proc)


def test_png_export_has_pixels(results_file, tmp_path):
    import numpy as np
    from matplotlib.image import imread
    out = tmp_path / "pngs"
    out.mkdir()
    r = CliRunner().invoke(cli, ["report", str(results_file), "--out", str(tmp_path / "r.html"), "--png", str(out)])
    if r.exit_code == 2 and "not available yet" in r.output:
        pytest.skip("`infersim report --png` is not implemented on this branch yet")
    assert r.exit_code == 0, r.output
    files = sorted(out.glob("*.png"))
    assert files
    for f in files:
        assert f.stat().st_size > 5_000, f
        img = imread(f)
        flat = img.reshape(-1, img.shape[-1]) if img.ndim == 3 else img.reshape(-1, 1)
        assert len(np.unique(flat, axis=0)) > 1, f"{f.name} is one colour"
