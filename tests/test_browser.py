"""The widget panels in a real browser: JupyterLab on loopback, Debian's headless Chromium
driven by Playwright. A notebook connects to an embedded cluster, the cluster panel's ticks
change what train runs on, the variables view lists the sparse variables, and the run
panel's throughput plot grows while training runs. Screenshots go to test-artifacts/browser.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import nbformat
import psutil
import pytest
from distributed.utils import open_port

from programs import CELL

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# The flags this machine's closed network needs (no background connections, no sandbox as root).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium: `make setup` installs Debian's chromium where it can "
                             "(root and apt-get); install it to run the browser test")

CELLS = [
    "%load_ext parallax_nb",
    "%parallax connect --local 3",
    CELL.format(dense="Dense"),
    "import parallax_nb as px\nprog = px.Program(model_fn, loss_fn, dataset_fn, optimizer_fn, "
    "name='toy')\n%parallax analyze prog --steps 2",
    "%%parallax train --mode HYBRID --steps 2000 --batch-size 4 --name toy\n"
    + CELL.format(dense="Dense"),
    "from parallax_nb.notebook import current_session\n"
    "print('ranks used:', len(current_session().run.slots))",
    "%%parallax train --steps 5 --name typo\n" + CELL.format(dense="Dnse"),
]


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    """A JupyterLab server on loopback, serving a fresh notebook, stopped with its kernels."""
    root = tmp_path_factory.mktemp("lab")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    nbformat.write(notebook, root / "panels.ipynb")
    port, token = open_port(), uuid.uuid4().hex
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
               JUPYTER_RUNTIME_DIR=str(root / "runtime"), JUPYTER_CONFIG_DIR=str(root / "config"))
    log = open(root / "lab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--LabApp.news_url=None", "--LabApp.check_for_updates_class="
         "jupyterlab.NeverCheckForUpdate"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_http(f"{url}/api/status?token={token}", server, root / "lab.log")
        yield url, token
    finally:
        _stop_process_tree(server)
        log.close()


@pytest.fixture(scope="module")
def page(jupyterlab):
    from playwright.sync_api import sync_playwright

    url, token = jupyterlab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        page.goto(f"{url}/lab/tree/panels.ipynb?token={token}")
        page.wait_for_selector(".jp-Notebook .jp-Cell")
        # The kernel is ready once the status bar says so (the toolbar's indicator is idle
        # before a kernel is even connected).
        page.wait_for_selector(".jp-StatusBar-TextItem:has-text('| Idle')")
        try:
            yield page
        finally:
            page.screenshot(path=str(ARTIFACTS / "last.png"))   # what the page showed at the end
            browser.close()


def run_cell(page, index):
    """Run cell ``index`` (click it, Shift+Enter) and wait until the kernel is idle again."""
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    page.wait_for_function(
        "i => { const p = document.querySelectorAll('.jp-Notebook .jp-Cell')[i]"
        ".querySelector('.jp-InputPrompt'); return p && /\\[\\d+\\]/.test(p.textContent); }",
        arg=index)
    return cell


def throughput_points(page) -> int:
    """Points of the run panel's total-throughput line, read from BokehJS's document."""
    return page.evaluate("""() => {
        for (const doc of (window.Bokeh ? window.Bokeh.documents : [])) {
            const source = doc.get_model_by_name('totals');
            if (source) return source.data.step.length;
        }
        return -1;
    }""")


def test_panels_drive_and_follow_a_run_in_the_browser(page):
    run_cell(page, 0)
    cluster = run_cell(page, 1)
    cluster.locator(".parallax-cluster-panel").wait_for()
    boxes = cluster.locator(".parallax-device input[type=checkbox]")
    assert boxes.count() == 3                                   # one tick per CPU slot
    assert all(boxes.nth(i).is_checked() for i in range(3))
    boxes.nth(2).uncheck()
    page.wait_for_function("() => document.querySelector('.parallax-selection')"
                           ".textContent.includes('2 of 3 device(s) selected')")
    page.screenshot(path=str(ARTIFACTS / "cluster_panel.png"))

    run_cell(page, 2)
    variables = run_cell(page, 3)
    table = variables.locator(".parallax-variables")
    table.wait_for()
    sparse_rows = table.locator("tr", has_text="sparse")
    assert sparse_rows.count() == 1 and "words/embeddings:0" in sparse_rows.inner_text()
    page.screenshot(path=str(ARTIFACTS / "variables_view.png"))

    training = page.locator(".jp-Notebook .jp-Cell").nth(4)
    training.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    panel = training.locator(".parallax-run-panel")
    panel.wait_for()
    page.wait_for_function("() => document.querySelector('.parallax-run-panel .parallax-status')"
                           ".textContent === 'running'", timeout=180_000)
    assert "2 rank(s)" in panel.inner_text()                   # the unticked slot is not used
    first = _wait_for_points(page, above=0)
    later = _wait_for_points(page, above=first)
    assert later > first > 0                                  # the plot grows while running
    page.screenshot(path=str(ARTIFACTS / "run_panel.png"))

    panel.get_by_role("button", name="Stop").click()
    page.wait_for_function("() => document.querySelector('.parallax-run-panel .parallax-status')"
                           ".textContent === 'stopped'", timeout=60_000)
    page.wait_for_function("() => document.querySelector('.parallax-outcome')"
                           ".textContent.includes('stopped')")
    page.screenshot(path=str(ARTIFACTS / "run_stopped.png"))

    check = run_cell(page, 5)
    assert "ranks used: 2" in check.locator(".jp-OutputArea").inner_text()

    typo = run_cell(page, 6)            # an error in the cell: in the panel and as a traceback
    assert "has no attribute 'Dnse'" in typo.locator(".parallax-outcome").inner_text()
    assert "failed" in typo.locator(".parallax-status").inner_text()
    traceback = typo.locator(".jp-OutputArea-output[data-mime-type="
                             "'application/vnd.jupyter.stderr']")
    assert "ProgramError" in traceback.inner_text()
    page.screenshot(path=str(ARTIFACTS / "cell_error.png"))


def _wait_for_points(page, above, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        points = throughput_points(page)
        if points > above:
            return points
        time.sleep(0.5)
    raise AssertionError(f"the throughput plot stayed at {throughput_points(page)} point(s)")


def _wait_for_http(url, process, log_path, timeout=90.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited: {Path(log_path).read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                json.load(response)
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer within {timeout} s: "
                       f"{Path(log_path).read_text()[-2000:]}")


def _stop_process_tree(process, timeout=20.0):
    """Stop JupyterLab and everything below it (kernels, their Dask clusters, ranks)."""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    process.send_signal(signal.SIGINT)       # Jupyter shuts its kernels down on SIGINT x2
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    _, alive = psutil.wait_procs(children, timeout=timeout)
    for child in alive:
        child.kill()
    assert not alive, f"left running after JupyterLab stopped: {[p.pid for p in alive]}"
