"""OIP v2 REST against the real binary: health, metadata, JSON and binary inference for
every datatype, outputs equal to Python onnxruntime's."""

import json

import numpy as np
import requests

from helpers import OIP_TO_NP, json_input, reference, sample

TYPES = list(OIP_TO_NP)


def test_health_and_server_metadata(server):
    assert requests.get(f"{server.http}/v2/health/live").status_code == 200
    # One model is broken on purpose: the server is live but reports not ready.
    r = requests.get(f"{server.http}/v2/health/ready")
    assert r.status_code == 503 and r.json() == {"ready": False}
    meta = requests.get(f"{server.http}/v2").json()
    assert meta["name"] == "tinyinfer"
    assert "binary_tensor_data" in meta["extensions"]


def test_model_metadata_and_versions(server):
    meta = requests.get(f"{server.http}/v2/models/mlp").json()
    assert meta["versions"] == ["1", "2"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 16]}]
    assert meta["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 8]}]
    assert requests.get(f"{server.http}/v2/models/mlp/versions/2").status_code == 200
    assert requests.get(f"{server.http}/v2/models/mlp/versions/9").status_code == 404
    assert requests.get(f"{server.http}/v2/models/mlp/ready").json()["ready"] is True
    assert requests.get(f"{server.http}/v2/models/mlp/versions/1/ready").status_code == 200


def test_broken_model_reported_with_reason(server):
    r = requests.get(f"{server.http}/v2/models/broken/ready")
    assert r.status_code == 503
    assert r.json()["ready"] is False and "broken.onnx" in r.json()["error"]
    index = {(e["name"], e["version"]): e for e in requests.post(f"{server.http}/v2/repository/index").json()}
    assert index[("broken", "1")]["state"] == "UNAVAILABLE"
    assert index[("broken", "1")]["reason"]
    assert index[("mlp", "1")]["state"] == "READY"
    r = requests.post(f"{server.http}/v2/models/broken/infer", json={"inputs": []})
    assert r.status_code == 503 and "error" in r.json()


def test_mlp_json_matches_onnxruntime(server):
    x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    for version in ("1", "2"):
        body = {"id": "req-7", "inputs": [json_input("input", x, "FP32")]}
        r = requests.post(f"{server.http}/v2/models/mlp/versions/{version}/infer", json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["id"] == "req-7" and out["model_version"] == version
        got = np.array(out["outputs"][0]["data"], np.float32).reshape(out["outputs"][0]["shape"])
        np.testing.assert_allclose(got, reference("mlp.onnx", {"input": x})["output"], rtol=1e-5, atol=1e-6)


def test_unbatched_fixed_shape_model(server):
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    r = requests.post(f"{server.http}/v2/models/fixed/infer", json={"inputs": [json_input("x", x, "FP32")]})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == (x + 1).flatten().tolist()


def test_every_datatype_json(server):
    rng = np.random.default_rng(2)
    arrays = {t: sample(t, (2, 3), rng) for t in TYPES}
    body = {"inputs": [json_input(f"in_{t}", a, t) for t, a in arrays.items()]}
    r = requests.post(f"{server.http}/v2/models/all_types/infer", json=body)
    assert r.status_code == 200, r.text
    outs = {o["name"]: o for o in r.json()["outputs"]}
    for t, a in arrays.items():
        o = outs[f"out_{t}"]
        assert o["datatype"] == t and o["shape"] == [2, 3]
        if t == "BYTES":
            assert o["data"] == [s for s in a.flatten()]
        elif t == "FP16":
            np.testing.assert_array_equal(np.array(o["data"], np.float16), a.flatten())
        else:
            np.testing.assert_array_equal(np.array(o["data"], dtype=OIP_TO_NP[t]), a.flatten())


def _binary_body(inputs, outputs_binary=True):
    head = {"inputs": [], "parameters": {"binary_data_output": outputs_binary}}
    blobs = []
    for name, t, a in inputs:
        if t == "BYTES":
            raw = b"".join(len(s.encode()).to_bytes(4, "little") + s.encode() for s in a.flatten())
        else:
            raw = a.tobytes()
        head["inputs"].append({"name": name, "shape": list(a.shape), "datatype": t,
                               "parameters": {"binary_data_size": len(raw)}})
        blobs.append(raw)
    h = json.dumps(head).encode()
    return h, h + b"".join(blobs)


def test_every_datatype_binary_extension(server):
    rng = np.random.default_rng(3)
    arrays = {t: sample(t, (4, 3), rng) for t in TYPES}
    h, body = _binary_body([(f"in_{t}", t, a) for t, a in arrays.items()])
    r = requests.post(f"{server.http}/v2/models/all_types/infer", data=body,
                      headers={"Inference-Header-Content-Length": str(len(h))})
    assert r.status_code == 200, r.text
    hl = int(r.headers["Inference-Header-Content-Length"])
    head = json.loads(r.content[:hl])
    blob = r.content[hl:]
    off = 0
    for o in head["outputs"]:
        size = o["parameters"]["binary_data_size"]
        raw, off = blob[off:off + size], off + size
        t = o["datatype"]
        src = arrays[t]
        if t == "BYTES":
            items, p = [], 0
            while p < len(raw):
                n = int.from_bytes(raw[p:p + 4], "little")
                items.append(raw[p + 4:p + 4 + n].decode())
                p += 4 + n
            assert items == list(src.flatten())
        else:
            np.testing.assert_array_equal(np.frombuffer(raw, dtype=OIP_TO_NP[t]).reshape(4, 3), src)
    assert off == len(blob)


def test_requested_output_subset(server):
    rng = np.random.default_rng(4)
    arrays = {t: sample(t, (1, 3), rng) for t in TYPES}
    body = {"inputs": [json_input(f"in_{t}", a, t) for t, a in arrays.items()],
            "outputs": [{"name": "out_INT64"}, {"name": "out_FP32", "parameters": {"binary_data": False}}]}
    r = requests.post(f"{server.http}/v2/models/all_types/infer", json=body)
    assert r.status_code == 200, r.text
    assert [o["name"] for o in r.json()["outputs"]] == ["out_INT64", "out_FP32"]


def test_bert_rest_matches_onnxruntime(server):
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 8192, (2, 12)).astype(np.int64)
    mask = np.ones((2, 12), np.int64)
    mask[1, 9:] = 0
    h, body = _binary_body([("input_ids", "INT64", ids), ("attention_mask", "INT64", mask)])
    r = requests.post(f"{server.http}/v2/models/bert/infer", data=body,
                      headers={"Inference-Header-Content-Length": str(len(h))})
    assert r.status_code == 200, r.text
    hl = int(r.headers["Inference-Header-Content-Length"])
    got = np.frombuffer(r.content[hl:], np.float32).reshape(2, 12, 768)
    ref = reference("bert.onnx", {"input_ids": ids, "attention_mask": mask})["last_hidden_state"]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_metrics_exposed(server):
    x = np.zeros((1, 16), np.float32)
    requests.post(f"{server.http}/v2/models/mlp/infer", json={"inputs": [json_input("input", x, "FP32")]})
    text = requests.get(f"{server.http}/metrics").text
    for name in ("tinyinfer_requests_total", "tinyinfer_request_failures_total", "tinyinfer_request_duration_seconds",
                 "tinyinfer_queue_duration_seconds", "tinyinfer_compute_duration_seconds", "tinyinfer_batch_size",
                 "tinyinfer_inflight_requests"):
        assert name in text, name
    assert 'tinyinfer_requests_total{model="mlp",version="1"}' in text
