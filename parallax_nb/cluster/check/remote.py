"""The parts of the check that run inside the Dask workers (through ``client.run``).

Shipped by value (``cloudpickle.register_pickle_by_value``) and written with the standard
library only, so they run on a worker that cannot import parallax_nb, TensorFlow or Horovod:
finding that out is what they are for.
"""
import asyncio
import os
import socket
import sys
import tempfile
import threading
import time

MARKER = "PARALLAX-ENV "


async def environment(source, mode, timeout, dask_worker=None):
    """Run the environment probe (``envprobe.py``'s source) with this worker's interpreter
    and environment, in a temporary directory as a rank is started; its facts, or why not."""
    import json

    started = time.monotonic()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", source, mode, cwd=tempfile.gettempdir(),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=dict(os.environ))
    except OSError as exc:
        return {"error": f"could not start {sys.executable}: {exc}"}
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        return {"error": f"the probe ({mode}) did not finish within {timeout:g} s"}
    for line in out.decode(errors="replace").splitlines():
        if line.startswith(MARKER):
            facts = json.loads(line[len(MARKER):])
            facts["seconds"] = round(time.monotonic() - started, 2)
            return facts
    tail = (err.decode(errors="replace").strip().splitlines() or ["(no output)"])[-3:]
    return {"error": f"the probe exited with code {process.returncode}: " + " | ".join(tail)}


def listen(plan, seconds, dask_worker=None):
    """Open a listening TCP socket on each address ``plan[this worker]`` names (a port
    chosen by the system, as Gloo's and the parameter servers' are); each accepts until it
    has seen the connections it expects or ``seconds`` pass, then closes.

    Returns ``{address: port or error}``."""
    mine = plan.get(dask_worker.address if dask_worker is not None else None, {})
    ports = {}
    for address, expected in mine.items():
        try:
            server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind((address, 0))
            server.listen(16)
        except OSError as exc:
            ports[address] = f"cannot listen on {address}: {exc}"
            continue
        ports[address] = server.getsockname()[1]
        threading.Thread(target=_accept, args=(server, expected, time.monotonic() + seconds),
                         daemon=True, name="parallax-check-listener").start()
    return ports


def _accept(server, expected, deadline):
    server.settimeout(0.1)
    seen = 0
    try:
        while seen < expected and time.monotonic() < deadline:
            try:
                connection, _ = server.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            connection.close()
            seen += 1
    finally:
        server.close()


async def connect(targets, timeout, dask_worker=None):
    """Open a TCP connection to each ``(address, port)`` of ``targets[this worker]``.

    Returns ``{"address:port": None (connected) or the error}``."""
    mine = targets.get(dask_worker.address if dask_worker is not None else None, [])

    async def one(address, port):
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
        except asyncio.TimeoutError:
            return f"no answer within {timeout:g} s"
        except OSError as exc:
            return f"{type(exc).__name__}: {exc.strerror or exc}"
        writer.close()
        return None

    results = await asyncio.gather(*(one(a, p) for a, p in mine))
    return {f"{a}:{p}": r for (a, p), r in zip(mine, results)}
