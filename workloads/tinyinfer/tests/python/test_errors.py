"""Bad requests get the right status and an {"error": ...} body; the server keeps
serving other requests afterwards."""

import numpy as np
import requests

from helpers import json_input


def post(server, model, body, **kw):
    return requests.post(f"{server.http}/v2/models/{model}/infer", json=body, **kw)


def assert_error(r, status):
    assert r.status_code == status, (r.status_code, r.text)
    assert isinstance(r.json().get("error"), str) and r.json()["error"]


def test_bad_inputs_get_400(server):
    x = np.zeros((2, 16), np.float32)
    assert_error(post(server, "mlp", {"inputs": [json_input("input", np.zeros((2, 15), np.float32), "FP32")]}), 400)
    assert_error(post(server, "mlp", {"inputs": [json_input("input", x, "FP64")]}), 400)
    assert_error(post(server, "mlp", {"inputs": [json_input("input", x.astype(np.int32), "INT32")]}), 400)
    assert_error(post(server, "mlp", {"inputs": []}), 400)
    assert_error(post(server, "mlp", {"inputs": [json_input("input", x, "FP32"), json_input("extra", x, "FP32")]}), 400)
    assert_error(post(server, "mlp", {"inputs": [{"name": "input", "shape": [2, 16], "datatype": "FP32", "data": [1.0]}]}), 400)
    assert_error(post(server, "mlp", {"inputs": [{"name": "input", "shape": [1, 16], "datatype": "COMPLEX", "data": [0] * 16}]}), 400)
    assert_error(post(server, "mlp", {"inputs": [{"name": "input", "shape": [1, 16], "datatype": "FP32", "data": ["x"] * 16}]}), 400)
    assert_error(post(server, "mlp", {"inputs": [json_input("input", x, "FP32")], "outputs": [{"name": "nope"}]}), 400)
    assert_error(requests.post(f"{server.http}/v2/models/mlp/infer", data=b"{not json"), 400)
    assert_error(requests.post(f"{server.http}/v2/models/mlp/infer", data=b'{"inputs": []}',
                               headers={"Inference-Header-Content-Length": "999"}), 400)


def test_unknown_model_gets_404(server):
    assert_error(post(server, "nope", {"inputs": []}), 404)
    assert_error(requests.get(f"{server.http}/v2/models/nope"), 404)
    assert_error(post(server, "mlp/versions/7", {"inputs": []}), 404)


def test_oversized_body_gets_413(server):
    # The server runs with the default 64 MiB limit.
    big = b" " * (64 * 1024 * 1024 + 10)
    r = requests.post(f"{server.http}/v2/models/mlp/infer", data=big)
    assert_error(r, 413)


def test_server_still_serves_after_errors(server):
    x = np.ones((1, 16), np.float32)
    r = post(server, "mlp", {"inputs": [json_input("input", x, "FP32")]})
    assert r.status_code == 200
