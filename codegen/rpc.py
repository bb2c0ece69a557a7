"""Timing kernels here or on another machine through TVM RPC, as TVM measures on boards.

A tracker hands out sessions on the servers registered under a key; a kernel is compiled
here, uploaded as a shared library, loaded there and timed with the server's
`time_evaluator`. `local_cluster` starts a tracker and servers on 127.0.0.1 (what
`nnforge rpc` and the tests use); `python -m tvm.exec.rpc_tracker` / `rpc_server` start
them on real machines.
"""
from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import time
from typing import Callable

from ..errors import NnforgeError
from .kernel import LowerNode
from .measure import build_kernel, kernel_tensors


def parse_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` -> (host, port), with a clear error otherwise."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise NnforgeError(f"--rpc expects HOST:PORT of a TVM RPC tracker, got {text!r}")
    return host, int(port)


def _rpc():
    try:
        from tvm import rpc
        from tvm.rpc import server, tracker  # noqa: F401  (needs tornado)
    except ImportError as e:
        raise NnforgeError(f"TVM RPC needs the 'tornado' package ({e}); pip install 'nnforge[bench]'") from None
    return rpc


def sessions(address: str, key: str, count: int, timeout: float = 60.0) -> list:
    """`count` RPC sessions from the tracker at `address` for servers registered under `key`."""
    rpc = _rpc()
    host, port = parse_address(address)
    try:  # TVM's client retries for a minute; a closed port should fail at once
        socket.create_connection((host, port), timeout=5).close()
    except OSError as e:
        raise NnforgeError(f"no RPC tracker answers at {address}: {e.strerror or e}") from None
    try:
        client = rpc.connect_tracker(host, port)
        return [client.request(key, priority=1, session_timeout=timeout) for _ in range(count)]
    except Exception as e:  # a refused connection or an unknown key: say which tracker and key
        raise NnforgeError(f"no RPC session for key {key!r} from the tracker at {address}: "
                           f"{str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}") from None


def kernel_sampler(n: LowerNode, kernel, session=None, number: int = 5) -> Callable[[], float]:
    """A callable returning the mean seconds of `number` runs of `kernel`, locally (session None)
    or on the RPC session's CPU; inputs are random, constants the kernel's own."""
    import tvm

    executable = build_kernel(n, kernel)
    if session is None:
        mod, dev = executable.mod, tvm.cpu()
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "kernel.so")
            executable.export_library(path)
            session.upload(path)
        mod, dev = session.load_module("kernel.so"), session.cpu()
    args = kernel_tensors(n, kernel, dev)
    timer = mod.time_evaluator("k", dev, number=number, repeat=1)
    return lambda: float(timer(*args).mean)


@contextlib.contextmanager
def local_cluster(key: str = "nnforge", servers: int = 2, port: int = 9190):
    """A tracker and `servers` RPC servers on 127.0.0.1; yields the tracker's `HOST:PORT`."""
    _rpc()
    from tvm.rpc.server import Server
    from tvm.rpc.tracker import Tracker

    tracker = Tracker(host="127.0.0.1", port=port, port_end=port + 100, silent=True)
    started = []
    try:
        for _ in range(servers):
            started.append(Server(host="127.0.0.1", port=port + 110, port_end=port + 300,
                                  tracker_addr=("127.0.0.1", tracker.port), key=key, silent=True))
        address = f"127.0.0.1:{tracker.port}"
        _wait_registered(address, key, servers)
        yield address
    finally:
        for s in started:
            s.terminate()
        tracker.terminate()


def _wait_registered(address: str, key: str, servers: int, timeout: float = 30.0):
    rpc = _rpc()
    host, port = parse_address(address)
    deadline = time.time() + timeout
    while time.time() < deadline:
        summary = rpc.connect_tracker(host, port).summary()
        free = summary.get("queue_info", {}).get(key, {}).get("free", 0)
        if free >= servers:
            return
        time.sleep(0.2)
    raise NnforgeError(f"RPC servers for key {key!r} did not register with the tracker at {address} "
                       f"within {timeout:.0f}s")
