"""Starts the real `vectorforge` binary (Qdrant-compatible REST server) for the tests.

VECTORFORGE_BIN names the binary (`make test-vectorforge-server` builds it and sets it);
the default is the workspace's debug build. Each server gets free ports, a data dir under
pytest's tmp dir and a log file (stderr) beside it; the log's tail is attached to the
report of every failing test. `VectorforgeServer.restart()` stops the process with SIGTERM
(it drains and flushes) and starts it again on the same data dir and ports.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from qdrant_client import QdrantClient

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
# Shared test helpers (the stand-in OTLP collector).
sys.path.insert(0, os.path.join(ROOT, "e2e", "python"))
BIN = os.environ.get(
    "VECTORFORGE_BIN",
    os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "debug", "vectorforge"),
)
READY_TIMEOUT_S = 60
STOP_TIMEOUT_S = 60
LOG_TAIL_LINES = 200

# Servers currently running; their log tails go into the report of a failing test.
_RUNNING = []


def free_port(exclude=()):
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in exclude:
            return port


class VectorforgeServer:
    """One vectorforge process bound to fixed ports and a fixed data dir (restartable)."""

    def __init__(self, data_dir, log_path, api_key=None, name="vectorforge", env=None):
        self.name = name
        self.data_dir = str(data_dir)
        self.log_path = str(log_path)
        self.api_key = api_key
        self.extra_env = dict(env or {})
        self.http_port = free_port()
        self.grpc_port = free_port(exclude=(self.http_port,))
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.proc = None
        self.starts = 0
        self.last_returncode = None

    # ------------------------------------------------------------------ process
    def command(self):
        cmd = [BIN, "--data-dir", self.data_dir, "--host", "127.0.0.1",
               "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port)]
        if self.api_key is not None:
            cmd += ["--api-key", self.api_key]
        return cmd

    def start(self):
        if not os.path.exists(BIN):
            pytest.fail(f"{BIN} missing: run `make test-vectorforge-server` (builds it) "
                        "or set VECTORFORGE_BIN")
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        env = dict(os.environ)
        for k in [k for k in env if k.startswith("VECTORFORGE_")]:
            env.pop(k)  # the command line decides (API key, start collection, ...), never the caller's shell
        env.update(self.extra_env)
        env.setdefault("RUST_LOG", "info")
        env.setdefault("NO_COLOR", "1")
        env.setdefault("RUST_BACKTRACE", "1")
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n")
            log.flush()
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, env=env)
        if self not in _RUNNING:
            _RUNNING.append(self)
        self.wait_ready()
        return self

    def wait_ready(self, timeout=READY_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        headers = {"api-key": self.api_key} if self.api_key else {}
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                _RUNNING.remove(self)
                pytest.fail(f"vectorforge exited with {self.proc.returncode} before it was ready:\n"
                            f"{self.log_tail()}")
            try:
                req = urllib.request.Request(f"{self.url}/readyz", headers=headers)
                with urllib.request.urlopen(req, timeout=2) as resp:
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}"
            except (urllib.error.URLError, OSError) as e:
                last = repr(e)
            time.sleep(0.1)
        self.kill()
        pytest.fail(f"vectorforge not ready within {timeout}s (last: {last}):\n{self.log_tail()}")

    def stop(self, timeout=STOP_TIMEOUT_S):
        """SIGTERM and wait; returns the exit status (a graceful shutdown exits 0)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"vectorforge did not exit within {timeout}s of SIGTERM:\n{self.log_tail()}")
        if self in _RUNNING:
            _RUNNING.remove(self)
        self.last_returncode = rc
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self in _RUNNING:
            _RUNNING.remove(self)

    def restart(self):
        """Graceful stop, then start on the same data dir and ports; asserts a clean exit."""
        rc = self.stop()
        assert rc == 0, f"vectorforge exited with {rc} on SIGTERM (expected a clean 0):\n{self.log_tail()}"
        self.start()

    # ------------------------------------------------------------------ helpers
    def client(self, **kwargs):
        kwargs.setdefault("timeout", 60)
        # The version check runs in a background thread and only warns; a restart racing it
        # warns spuriously. test_server_info_is_compatible_with_client checks the version.
        kwargs.setdefault("check_compatibility", False)
        if self.api_key is not None:
            kwargs.setdefault("api_key", self.api_key)
            kwargs.setdefault("https", False)
        return QdrantClient(url=self.url, prefer_grpc=False, **kwargs)

    def log_text(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=LOG_TAIL_LINES):
        text = self.log_text().splitlines()
        return f"[{self.log_path}, last {min(lines, len(text))} lines]\n" + "\n".join(text[-lines:])


def make_server(tmp_path_factory, name, api_key=None, env=None):
    base = tmp_path_factory.mktemp(name)
    data = base / "data"
    data.mkdir()
    return VectorforgeServer(data, base / "vectorforge.log", api_key=api_key, name=name, env=env)


@pytest.fixture(scope="module")
def vf_server(tmp_path_factory):
    """A vectorforge server shared by the tests of one module (restartable)."""
    srv = make_server(tmp_path_factory, "vf").start()
    yield srv
    srv.stop()
    srv.kill()


@pytest.fixture
def server_factory(tmp_path_factory):
    """Starts extra servers (e.g. with an API key); all are stopped after the test."""
    started = []

    def factory(name="vf-extra", api_key=None, env=None):
        srv = make_server(tmp_path_factory, name, api_key=api_key, env=env).start()
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        srv.stop()
        srv.kill()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for srv in list(_RUNNING):
            rep.sections.append((f"vectorforge log: {srv.name}", srv.log_tail()))
