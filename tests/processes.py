"""Server processes the tests start (a Dask scheduler and workers, a Prefect server): a free
port to start one on, and stopping them afterwards, shared by the tests that start them."""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Sequence
from typing import Any


def free_port() -> int:
    """A loopback TCP port nothing listens on (a server started next may take it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_processes(processes: Sequence[subprocess.Popen[Any]], *, timeout: float) -> None:
    """SIGTERM every process still running, in the given order, then wait for each; one that
    has not exited ``timeout`` seconds into its wait is killed (and waited for, so none is
    left a zombie)."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
