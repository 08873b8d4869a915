"""Dynamic batching against the real binary: concurrent requests are merged (batch-size
histogram), results equal unbatched onnxruntime outputs, a full queue answers 429, an
expired deadline 504, and the server keeps serving."""

import concurrent.futures as cf
import re

import numpy as np
import requests

from conftest import MODELS, start_server, stop_server
from helpers import json_input, reference


def histogram(server, name, model, version):
    text = requests.get(f"{server.http}/metrics").text
    labels = f'model="{model}",version="{version}"'
    s = re.search(rf"{name}_sum\{{{labels}\}} ([0-9.e+]+)", text)
    c = re.search(rf"{name}_count\{{{labels}\}} ([0-9.e+]+)", text)
    return (float(s.group(1)) if s else 0.0), (float(c.group(1)) if c else 0.0)


def mlp_call(server, version, x):
    r = requests.post(f"{server.http}/v2/models/mlp/versions/{version}/infer",
                      json={"inputs": [json_input("input", x, "FP32")]})
    assert r.status_code == 200, r.text
    return np.array(r.json()["outputs"][0]["data"], np.float32).reshape(r.json()["outputs"][0]["shape"])


def test_concurrent_requests_are_batched_and_correct(server):
    rng = np.random.default_rng(20)
    xs = [rng.standard_normal((1 + i % 3, 16)).astype(np.float32) for i in range(48)]
    for version in ("1", "2"):
        sum0, count0 = histogram(server, "tinyinfer_batch_size", "mlp", version)
        with cf.ThreadPoolExecutor(16) as pool:
            outs = list(pool.map(lambda x: mlp_call(server, version, x), xs))
        for x, got in zip(xs, outs):
            np.testing.assert_allclose(got, reference("mlp.onnx", {"input": x})["output"], rtol=1e-5, atol=1e-5)
        sum1, count1 = histogram(server, "tinyinfer_batch_size", "mlp", version)
        rows, batches = sum1 - sum0, count1 - count0
        assert rows == sum(x.shape[0] for x in xs)
        if version == "1":
            assert batches < len(xs), "no requests were merged"
        else:
            assert batches == len(xs), "maxBatchSize=1 must run each request alone"


def test_bert_batched_matches_unbatched_reference(server):
    rng = np.random.default_rng(21)
    ids = [rng.integers(0, 8192, (1, 16)).astype(np.int64) for _ in range(8)]
    mask = np.ones((1, 16), np.int64)

    def call(i):
        body = {"inputs": [json_input("input_ids", i, "INT64"), json_input("attention_mask", mask, "INT64")],
                "parameters": {"binary_data_output": True}}
        r = requests.post(f"{server.http}/v2/models/bert/infer", json=body)
        assert r.status_code == 200, r.text
        hl = int(r.headers["Inference-Header-Content-Length"])
        return np.frombuffer(r.content[hl:], np.float32).reshape(1, 16, 768)

    _, c0 = histogram(server, "tinyinfer_batch_size", "bert", "1")
    with cf.ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(call, ids))
    _, c1 = histogram(server, "tinyinfer_batch_size", "bert", "1")
    assert c1 - c0 < 8, "bert requests were not merged"
    for i, got in zip(ids, outs):
        ref = reference("bert.onnx", {"input_ids": i, "attention_mask": mask})["last_hidden_state"]
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_full_queue_gets_429_and_deadlines_504():
    srv = start_server([f"name=bert,uri={MODELS}/bert.onnx,maxBatchSize=1,maxQueueSize=1"])
    try:
        ids = np.ones((4, 128), np.int64)
        body = {"inputs": [json_input("input_ids", ids, "INT64"), json_input("attention_mask", ids, "INT64")],
                "parameters": {"binary_data_output": True}}
        with cf.ThreadPoolExecutor(12) as pool:
            codes = list(pool.map(lambda _: requests.post(f"{srv.http}/v2/models/bert/infer", json=body), range(12)))
        statuses = [r.status_code for r in codes]
        assert 429 in statuses and 200 in statuses, statuses
        assert all(s in (200, 429) for s in statuses), statuses
        assert "error" in next(r for r in codes if r.status_code == 429).json()
        late = dict(body, parameters={"timeout": 1})
        r = requests.post(f"{srv.http}/v2/models/bert/infer", json=late)
        assert r.status_code == 504, r.text
        assert requests.post(f"{srv.http}/v2/models/bert/infer", json=body).status_code == 200
    finally:
        stop_server(srv)
