"""Starts the real tinyinfer binary once per test session with the generated test
models, the MiniLM pipeline and one deliberately broken model."""

import os
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
# Shared test helpers (the stand-in OTLP collector).
sys.path.insert(0, os.path.join(ROOT, "e2e", "python"))
CACHE = os.environ.get("CACHE_DIR", os.path.expanduser("~/.cache/modelhub"))
MODELS = os.environ.get("TINYINFER_MODELS_DIR", os.path.join(CACHE, "tinyinfer", "models"))
MINILM = os.environ.get("TINYINFER_MINILM_DIR", os.path.join(CACHE, "tinyinfer", "minilm"))
BIN = os.environ.get("TINYINFER_BIN", os.path.join(ROOT, "target", "ti", "debug", "tinyinfer"))
ORT_LIB = os.environ.get(
    "ORT_DYLIB_PATH", os.path.join(CACHE, "tinyinfer", "ort-1.32.0", "libonnxruntime.so.1.32.0")
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, http_port, grpc_port, proc, log_path, cache_dir):
        self.cache_dir = cache_dir
        self.http = f"http://127.0.0.1:{http_port}"
        self.grpc = f"127.0.0.1:{grpc_port}"
        self.http_port = http_port
        self.grpc_port = grpc_port
        self.proc = proc
        self.log_path = log_path

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()


def model_specs(broken_path):
    return [
        f"name=mlp,version=1,uri=file://{MODELS}/mlp.onnx,maxBatchSize=32,maxQueueDelayUs=5000",
        f"name=mlp,version=2,uri={MODELS}/mlp.onnx,maxBatchSize=1",
        f"name=all_types,uri={MODELS}/all_types.onnx",
        f"name=fixed,uri={MODELS}/fixed.onnx",
        f"name=bert,uri={MODELS}/bert.onnx,maxBatchSize=16,maxQueueDelayUs=20000,maxQueueSize=64",
        f"name=minilm,uri={MINILM}/model.onnx,tokenizer={MINILM}/tokenizer.json,pooling=mean",
        f"name=broken,uri={broken_path}",
    ]


def start_server(specs, extra_args=(), env_extra=None, expected_models=None):
    expected = len(specs) if expected_models is None else expected_models
    for path in (BIN, ORT_LIB):
        if not os.path.exists(path):
            pytest.fail(f"{path} missing: run `make test-tinyinfer` (builds the binary, fetches the library)")
    http_port, grpc_port = free_port(), free_port()
    log = tempfile.NamedTemporaryFile(prefix="tinyinfer-", suffix=".log", delete=False)
    cache_dir = tempfile.mkdtemp(prefix="tinyinfer-cache-")
    cmd = [BIN, "--bind", "127.0.0.1", "--http-port", str(http_port), "--grpc-port", str(grpc_port),
           "--cache-dir", cache_dir, *extra_args]
    for spec in specs:
        cmd += ["--model", spec]
    env = dict(os.environ, ORT_DYLIB_PATH=ORT_LIB, RUST_LOG="info")
    env.pop("TINYINFER_MODELS", None)
    env.update(env_extra or {})
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = Server(http_port, grpc_port, proc, log.name, cache_dir)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"tinyinfer exited with {proc.returncode}:\n{server.log()}")
        try:
            index = requests.post(f"{server.http}/v2/repository/index", timeout=2).json()
            if len(index) >= expected and all(e["state"] != "LOADING" for e in index):
                return server
        except requests.RequestException:
            pass
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"tinyinfer did not finish loading:\n{server.log()}")


def stop_server(server):
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.proc.kill()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    broken = tmp_path_factory.mktemp("broken") / "broken.onnx"
    broken.write_bytes(b"this is not an onnx model")
    srv = start_server(model_specs(str(broken)))
    yield srv
    stop_server(srv)
