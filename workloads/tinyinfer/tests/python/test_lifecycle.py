"""Process lifecycle against the real binary: a missing ONNX Runtime library is one
clear error (no panic), models load from http:// with sha256 and from a JSON config,
load/unload at run time, and SIGTERM finishes in-flight requests before exiting 0."""

import concurrent.futures as cf
import hashlib
import http.server
import json
import os
import ssl
import subprocess
import threading
import time

import numpy as np
import requests

from conftest import BIN, MODELS, free_port, start_server, stop_server
from helpers import json_input


def test_missing_library_is_one_clear_error():
    env = dict(os.environ, ORT_DYLIB_PATH="/nonexistent/libonnxruntime.so")
    p = subprocess.run([BIN, "--http-port", str(free_port()), "--grpc-port", str(free_port()),
                        "--model", f"name=mlp,uri={MODELS}/mlp.onnx"],
                       env=env, capture_output=True, text=True, timeout=60)
    out = p.stdout + p.stderr
    assert p.returncode != 0
    assert "ONNX Runtime library not found" in out and "ORT_DYLIB_PATH" in out, out
    assert "panicked" not in out, out


def test_bad_flags_are_rejected():
    p = subprocess.run([BIN, "--model", "name=x,uri=/m.onnx,colour=red"], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "colour" in (p.stdout + p.stderr)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_http_download_config_json_and_repository_api(tmp_path):
    handler = lambda *a, **k: _Quiet(*a, directory=MODELS, **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/mlp.onnx"
    digest = hashlib.sha256(open(os.path.join(MODELS, "mlp.onnx"), "rb").read()).hexdigest()
    config = {"models": [
        {"name": "remote", "uri": url, "sha256": digest, "batching": {"maxBatchSize": 4}},
        {"name": "badsum", "uri": url, "sha256": "00" * 32},
    ]}
    srv = start_server([], env_extra={"TINYINFER_CONFIG": json.dumps(config)}, expected_models=2)
    try:
        x = np.ones((2, 16), np.float32)
        body = {"inputs": [json_input("input", x, "FP32")]}
        assert requests.post(f"{srv.http}/v2/models/remote/infer", json=body).status_code == 200
        r = requests.get(f"{srv.http}/v2/models/badsum/ready")
        assert r.status_code == 503 and "sha256" in r.json()["error"]
        # Unload: not ready, requests refused with 503; reload from the stored config.
        assert requests.post(f"{srv.http}/v2/repository/models/remote/unload").status_code == 200
        assert requests.get(f"{srv.http}/v2/models/remote/ready").status_code == 503
        assert requests.post(f"{srv.http}/v2/models/remote/infer", json=body).status_code == 503
        assert requests.post(f"{srv.http}/v2/repository/models/remote/load").status_code == 200
        assert requests.post(f"{srv.http}/v2/models/remote/infer", json=body).status_code == 200
        # Load a new model at run time with a config, Triton style.
        cfg = json.dumps({"name": "fresh", "version": "3", "uri": f"{MODELS}/fixed.onnx"})
        r = requests.post(f"{srv.http}/v2/repository/models/fresh/load", json={"parameters": {"config": cfg}})
        assert r.status_code == 200, r.text
        assert requests.get(f"{srv.http}/v2/models/fresh/versions/3/ready").status_code == 200
        bad = json.dumps({"name": "ghost", "uri": "/no/such.onnx"})
        r = requests.post(f"{srv.http}/v2/repository/models/ghost/load", json={"parameters": {"config": bad}})
        assert r.status_code == 503 and "no such file" in r.json()["error"]
        assert requests.post(f"{srv.http}/v2/repository/models/nope/unload").status_code == 404
        index = {e["name"]: e for e in requests.post(f"{srv.http}/v2/repository/index").json()}
        assert index["ghost"]["state"] == "UNAVAILABLE" and index["fresh"]["state"] == "READY"
        assert requests.get(f"{srv.http}/v2/health/live").status_code == 200
    finally:
        stop_server(srv)
        httpd.shutdown()
    cached = os.listdir(srv.cache_dir)
    assert any(name.endswith("mlp.onnx") for name in cached), cached


def test_https_download_with_custom_ca(tmp_path):
    ca, ca_key = tmp_path / "ca.pem", tmp_path / "ca.key"
    cert, key, csr, ext = (tmp_path / n for n in ("cert.pem", "key.pem", "leaf.csr", "leaf.ext"))
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    for cmd in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=tinyinfer-test-ca",
         "-keyout", ca_key, "-out", ca],
        ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", csr],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "1",
         "-extfile", ext, "-out", cert],
    ):
        subprocess.run(["openssl", *map(str, cmd)], check=True, capture_output=True)
    handler = lambda *a, **k: _Quiet(*a, directory=MODELS, **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{httpd.server_address[1]}/mlp.onnx"
    srv = start_server([f"name=tls,uri={url}"], env_extra={"SSL_CERT_FILE": str(ca)})
    try:
        body = {"inputs": [json_input("input", np.ones((1, 16), np.float32), "FP32")]}
        r = requests.post(f"{srv.http}/v2/models/tls/infer", json=body)
        assert r.status_code == 200, (r.text, srv.log())
    finally:
        stop_server(srv)
    # Without the CA the certificate is refused and the model reported with the reason.
    srv = start_server([f"name=tls,uri={url}"], env_extra={"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"})
    try:
        r = requests.get(f"{srv.http}/v2/models/tls/ready")
        assert r.status_code == 503 and "TLS" in r.json()["error"], r.text
    finally:
        stop_server(srv)
        httpd.shutdown()


def test_sigterm_finishes_in_flight_requests():
    srv = start_server([f"name=bert,uri={MODELS}/bert.onnx,maxBatchSize=2,maxQueueDelayUs=1000"])
    ids = np.ones((2, 256), np.int64)
    body = {"inputs": [json_input("input_ids", ids, "INT64"), json_input("attention_mask", ids, "INT64")],
            "parameters": {"binary_data_output": True}}
    with cf.ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(requests.post, f"{srv.http}/v2/models/bert/infer", json=body) for _ in range(6)]
        time.sleep(0.5)
        srv.proc.terminate()
        statuses = [f.result().status_code for f in futures]
    assert statuses == [200] * 6, statuses
    assert srv.proc.wait(timeout=60) == 0
    assert "stopped cleanly" in srv.log()
