"""Measure the link between two machines of a selection: the round trip and the bandwidth,
with plain TCP between their Dask workers (`Config(link="measure")`).

The planner prices a step's traffic with them (`analysis.timing`): a round of server
exchanges costs a round trip plus a TensorFlow remote call's dispatch, a grouped collective
Horovod's cycle plus a round trip. Measured once per pair of machines and kept on the
cluster object; the functions that run on the workers use the standard library only.
"""
from __future__ import annotations

import socket
import statistics
import threading
import time
from urllib.parse import urlparse

PINGS = 20
STREAM_BYTES = 8 * 2 ** 20      # at most this much, for at most STREAM_SECONDS
STREAM_SECONDS = 0.5
CHUNK = 64 * 1024


def measure_link(client, selection, timeout: float = 30.0):
    """A `Link` measured between the first two machines of ``selection`` (by address), or
    None when all its workers share one machine."""
    from ..analysis.timing import TF_DISPATCH_SECONDS, Link

    by_address = {}
    for device in selection.devices:
        by_address.setdefault(urlparse(device.worker).hostname, device.worker)
    if len(by_address) < 2:
        return None
    (host_a, worker_a), (host_b, worker_b) = sorted(by_address.items())[:2]
    port = client.run(_listen, host_b, timeout, workers=[worker_b])[worker_b]
    measured = client.run(_probe, host_b, port, timeout, workers=[worker_a])[worker_a]
    if isinstance(measured, str):
        raise RuntimeError(f"measuring the link from {host_a} to {host_b}: {measured}")
    rtt, bandwidth = measured
    return Link(bytes_per_second=bandwidth, exchange_seconds=rtt + TF_DISPATCH_SECONDS,
                collective_seconds=1e-3 + rtt,
                source=f"measured {host_a} -> {host_b}: {rtt * 1e3:.2f} ms round trip")


def _listen(host: str, timeout: float) -> int:
    """Accept one connection: answer each 1-byte ping, then read the stream until the other
    end stops sending and answer with one byte."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind((host, 0))
    server.listen(1)
    server.settimeout(timeout)

    def serve():
        try:
            connection, _ = server.accept()
        except OSError:          # nobody came within the timeout: close and end
            server.close()
            return
        with connection, server:
            connection.settimeout(timeout)
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(PINGS):
                connection.sendall(connection.recv(1))
            while connection.recv(CHUNK):
                pass
            connection.sendall(b"!")

    threading.Thread(target=serve, daemon=True, name="parallax-link-listener").start()
    return server.getsockname()[1]


def _probe(host: str, port: int, timeout: float):
    """(round trip seconds, bytes per second) to ``host:port``, or why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            trips = []
            for _ in range(PINGS):
                started = time.perf_counter()
                connection.sendall(b"?")
                _exactly(connection, 1)
                trips.append(time.perf_counter() - started)
            chunk = b"\0" * CHUNK
            started, sent = time.perf_counter(), 0
            while sent < STREAM_BYTES and time.perf_counter() - started < STREAM_SECONDS:
                connection.sendall(chunk)
                sent += CHUNK
            connection.shutdown(socket.SHUT_WR)
            _exactly(connection, 1)
            seconds = time.perf_counter() - started
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return statistics.median(trips), sent / seconds


def _exactly(connection, count: int) -> bytes:
    data = b""
    while len(data) < count:
        more = connection.recv(count - len(data))
        if not more:
            raise OSError("the other end closed the connection")
        data += more
    return data
