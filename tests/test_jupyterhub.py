"""The JupyterHub deployment, used for real: a hub on loopback started with
deploy/jupyterhub/jupyterhub_config.py (configurable-http-proxy from npm, a dummy login and
local-process servers swapped in), a user who logs in through the login form, gets a server,
starts a kernel by the parallax kernel's name and runs an analysis in it over the kernel
websocket, then opens the Dask dashboard through the hub's proxy. Everything the test started
(hub, proxy, server, the still running kernel) must be gone once the hub is stopped.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests
import websocket
from distributed.utils import open_port
from jupyter_client.session import Session

from cluster_tools import wait_until_gone

DEPLOY_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "jupyterhub" / \
    "jupyterhub_config.py"
ENV_PROXY = Path(sys.executable).parent.parent / "node" / "node_modules" / ".bin" / \
    "configurable-http-proxy"
HAS_PROXY = ENV_PROXY.exists() or shutil.which("configurable-http-proxy") is not None
USER = "alice"
KERNEL = "parallax_nb"

pytestmark = pytest.mark.skipif(
    not HAS_PROXY, reason="configurable-http-proxy is missing: `make setup` "
                          "(scripts/setup_system.sh) installs it with npm under .venv/node")

# What the test changes in the deployment's configuration: loopback ports, a dummy login,
# servers run as the test's own user with their homes and the kernel spec in the temp dir.
TEST_CONFIG = """\
load_subconfig({deploy!r})
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.ConfigurableHTTPProxy.pid_file = {pid_file!r}
c.JupyterHub.db_url = "sqlite:///{db}"
c.JupyterHub.cookie_secret_file = {cookie_secret!r}
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {home!r}
c.Spawner.environment["JUPYTER_PATH"] = {jupyter_path!r}
c.Spawner.args = {server_args!r}
"""

ANALYSIS_CELL = """\
import json, os, sys
legacy_keras = os.environ.get("TF_USE_LEGACY_KERAS")   # from the kernel spec, before any import
import numpy as np
import tensorflow as tf
import parallax_nb as px

def model_fn():
    return tf.keras.Sequential([tf.keras.Input(shape=(3,), dtype="int64"),
                                tf.keras.layers.Embedding(1000, 8, name="words"),
                                tf.keras.layers.Flatten(), tf.keras.layers.Dense(1, name="out")])

def loss_fn(model, batch):
    ids, target = batch
    return tf.reduce_mean(tf.square(model(ids)[:, 0] - target))

def dataset_fn(shard, num_shards, batch_size=8):
    rng = np.random.default_rng(0)
    ids, target = rng.integers(0, 1000, (64, 3)), rng.normal(size=64).astype("float32")
    return tf.data.Dataset.from_tensor_slices((ids, target)).shard(num_shards, shard
                                                                   ).batch(batch_size)

program = px.Program(model_fn, loss_fn, dataset_fn, lambda: tf.keras.optimizers.SGD(0.1),
                     name="hub_embedding")
frame = px.analyze(program, steps=2).to_frame()
print(json.dumps({"legacy_keras": legacy_keras, "python": sys.executable,
                  "sparse": sorted(frame[frame.kind == "sparse"].name),
                  "dense": int((frame.kind == "dense").sum())}))
"""

DASHBOARD_CELL = """\
from distributed import LocalCluster
local = LocalCluster(n_workers=1, processes=False, dashboard_address="127.0.0.1:0")
cluster = px.connect(local)
print(json.dumps({"dashboard": cluster.dashboard_link}))
"""

CLOSE_CELL = "cluster.close(); local.close()"


class Hub:
    """A JupyterHub process and what it started; ``stop`` says which processes outlived it."""

    def __init__(self, root: Path):
        self.root = root
        self.port = open_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "hub.log"
        config = root / "jupyterhub_test_config.py"
        config.write_text(TEST_CONFIG.format(
            deploy=str(DEPLOY_CONFIG), port=self.port, hub_port=open_port(),
            api_port=open_port(), pid_file=str(root / "proxy.pid"),
            db=root / "jupyterhub.sqlite", cookie_secret=str(root / "cookie_secret"),
            home=str(root / "home" / "{username}"),
            jupyter_path=str(root / "kernels" / "share" / "jupyter"),
            server_args=["--allow-root"] if os.geteuid() == 0 else []))
        # The kernel's TF_USE_LEGACY_KERAS must come from its spec, not leak from this process.
        env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
        self._log = open(self.log_path, "w")
        self.stopped = False
        self.process = subprocess.Popen(
            [str(Path(sys.executable).with_name("jupyterhub")), "-f", str(config)], cwd=root,
            env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def log_tail(self) -> str:
        return self.log_path.read_text()[-3000:]

    def wait_until_up(self, timeout=60.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterHub exited:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.url}/hub/login", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"JupyterHub did not answer within {timeout} s:\n{self.log_tail()}")

    def started_processes(self):
        """The hub and everything below it, plus anything (a kernel) whose command line
        names the test's directory, in case it was re-parented."""
        found = {}
        try:
            hub = psutil.Process(self.process.pid)
            found = {p.pid: p for p in [hub] + hub.children(recursive=True)}
        except psutil.NoSuchProcess:
            pass
        for process in psutil.process_iter(["cmdline"]):
            try:
                if str(self.root) in " ".join(process.info["cmdline"] or []):
                    found.setdefault(process.pid, process)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return list(found.values())

    def stop(self, timeout=30.0):
        """SIGTERM the hub (it stops the servers and the proxy) and return the command lines
        of processes that outlived it; those are then killed, so none outlives the test."""
        started = self.started_processes()
        self.stopped = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        survivors = []
        for pid in wait_until_gone([p.pid for p in started], timeout=timeout):
            try:
                process = psutil.Process(pid)
                survivors.append(" ".join(process.cmdline())[:200])
                process.kill()
            except psutil.NoSuchProcess:
                pass
        self._log.close()
        return survivors


class KernelSocket:
    """A kernel's websocket behind the hub: execute a cell, collect its stdout."""

    def __init__(self, url: str, cookie: str):
        self.socket = websocket.create_connection(url, header=[f"Cookie: {cookie}"],
                                                  timeout=180)
        self.session = Session(username=USER)

    def execute(self, code: str) -> str:
        request = self.session.msg("execute_request", {
            "code": code, "silent": False, "store_history": True, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": True})
        request["channel"] = "shell"
        self.socket.send(json.dumps(request, default=str))
        stdout, error = [], None
        while True:          # each recv is bounded by the socket's timeout
            message = json.loads(self.socket.recv())
            if message["parent_header"].get("msg_id") != request["header"]["msg_id"]:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream" and content["name"] == "stdout":
                stdout.append(content["text"])
            elif kind == "error":
                error = "\n".join(content["traceback"])
            elif kind == "status" and content["execution_state"] == "idle":
                break
        assert error is None, f"the cell failed:\n{error}"
        return "".join(stdout)

    def close(self):
        self.socket.close()


def last_json_line(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


@pytest.fixture
def hub(tmp_path):
    installed = subprocess.run(
        [sys.executable, "-m", "parallax_nb.kernels", "install", "--prefix",
         str(tmp_path / "kernels"), "--name", KERNEL],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    hub = Hub(tmp_path)
    try:
        hub.wait_until_up()
        yield hub
    finally:
        if not hub.stopped:
            hub.stop()


def log_in(hub: Hub) -> requests.Session:
    """The login form, as a browser submits it; then wait until the user's server answers
    (its first page also completes the server's OAuth handshake with the hub)."""
    browser = requests.Session()
    form = browser.get(f"{hub.url}/hub/login", timeout=10)
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', form.text).group(1)
    landed = browser.post(f"{hub.url}/hub/login", timeout=30,
                          data={"username": USER, "password": "any", "_xsrf": xsrf})
    assert landed.status_code == 200, landed.text[:500]
    lab = f"{hub.url}/user/{USER}/lab"
    deadline = time.time() + 120
    while time.time() < deadline:
        page = browser.get(lab, timeout=30)
        if page.status_code == 200 and page.url == lab:
            return browser
        time.sleep(1)
    raise TimeoutError(f"{USER}'s server did not start within 120 s:\n{hub.log_tail()}")


@pytest.mark.timeout(420)
def test_a_hub_user_runs_an_analysis_on_the_parallax_kernel(hub):
    browser = log_in(hub)
    server = f"{hub.url}/user/{USER}"
    xsrf = {"X-XSRFToken": browser.cookies.get("_xsrf", path=f"/user/{USER}/")}

    specs = browser.get(f"{server}/api/kernelspecs", timeout=30).json()["kernelspecs"]
    assert specs[KERNEL]["spec"]["display_name"] == "Python 3 (parallax_nb)"
    assert specs[KERNEL]["spec"]["argv"][0] == sys.executable
    started = browser.post(f"{server}/api/kernels", json={"name": KERNEL}, headers=xsrf,
                           timeout=30)
    assert started.status_code == 201, started.text
    kernel_id = started.json()["id"]

    cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies
                       if f"/user/{USER}/".startswith(c.path))
    kernel = KernelSocket(f"ws://127.0.0.1:{hub.port}/user/{USER}/api/kernels/{kernel_id}"
                          f"/channels", cookie)
    try:
        analysis = last_json_line(kernel.execute(ANALYSIS_CELL))
        assert analysis == {"legacy_keras": "1", "python": sys.executable,
                            "sparse": ["words/embeddings:0"], "dense": 2}

        link = last_json_line(kernel.execute(DASHBOARD_CELL))["dashboard"]
        assert re.fullmatch(rf"/user/{USER}/proxy/\d+/status", link), link
        dashboard = browser.get(f"{hub.url}{link}", timeout=60)
        assert dashboard.status_code == 200 and "Dask" in dashboard.text, dashboard.text[:500]
        kernel.execute(CLOSE_CELL)
    finally:
        kernel.close()

    # The kernel is still running: stopping the hub must take it down with the server.
    running = [" ".join(p.cmdline()) for p in hub.started_processes()]
    assert any("ipykernel_launcher" in command for command in running), running
    assert hub.stop() == [], "processes outlived the hub"
