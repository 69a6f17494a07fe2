"""JupyterHub for a team that trains with parallax_nb: one machine, one Python environment.

The hub, the users' single-user servers and their parallax kernels all run from the
environment this hub was started from (the one holding parallax_nb, TensorFlow and Horovod),
so there is a single thing to install and upgrade. The guide, docs/jupyterhub.md, walks
through it; tests/test_jupyterhub.py starts a hub with this file (loading it from a test
configuration that only swaps in loopback ports, a dummy login and temporary directories).

Run it from the directory that keeps the hub's state (database, cookie secret):

    cd /srv/jupyterhub && sudo /opt/parallax/.venv/bin/jupyterhub -f /path/to/jupyterhub_config.py
"""
import sys
from pathlib import Path

c = get_config()  # noqa: F821  (provided by JupyterHub when it loads this file)

ENV_BIN = Path(sys.executable).parent

# Users reach the hub through configurable-http-proxy on this address (put TLS in front of it,
# or set c.JupyterHub.ssl_cert / ssl_key).
c.JupyterHub.bind_url = "http://:8000"

# Unix accounts log in with their passwords and get a server running as themselves. Swap in
# an OAuthenticator (GitHub, GitLab, generic OIDC) for single sign-on.
c.JupyterHub.authenticator_class = "pam"
c.JupyterHub.spawner_class = "localprocess"
c.Authenticator.allow_all = True      # or c.Authenticator.allowed_users = {"alice", "bob"}

# configurable-http-proxy: the copy scripts/setup_system.sh installs next to the environment,
# else the one on PATH (npm install -g configurable-http-proxy).
PROJECT_PROXY = ENV_BIN.parent / "node" / "node_modules" / ".bin" / "configurable-http-proxy"
if PROJECT_PROXY.exists():
    c.ConfigurableHTTPProxy.command = [str(PROJECT_PROXY)]

# Single-user servers from this environment: its kernels, its parallax kernel spec, its
# jupyter-server-proxy (which serves the Dask dashboard under the user's URL).
c.Spawner.cmd = [str(ENV_BIN / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.environment = {
    # Dask dashboard links (client.dashboard_link, cluster widgets, px.connect(...)
    # .dashboard_link) go through the hub's proxy and jupyter-server-proxy, not to a port
    # the user's browser cannot reach.
    "DASK_DISTRIBUTED__DASHBOARD__LINK": "{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}/status",
}
# A server's first start imports Jupyter's extensions on a busy machine: allow it time.
c.Spawner.http_timeout = 60
c.Spawner.start_timeout = 120

# Servers and the proxy stop with the hub (the defaults, stated because the test relies on it).
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True
