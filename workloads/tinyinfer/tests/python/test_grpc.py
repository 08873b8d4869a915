"""OIP v2 gRPC and tritonclient (http + grpc, JSON + binary modes) against the real
binary; garbage protobuf gets an error and the server keeps serving."""

import grpc
import numpy as np
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp

from helpers import OIP_TO_NP, reference, sample

TYPES = list(OIP_TO_NP)


def _inputs(module, arrays, binary=True):
    out = []
    for t, a in arrays.items():
        i = module.InferInput(f"in_{t}", list(a.shape), t)
        if module is thttp:
            i.set_data_from_numpy(a, binary_data=binary)
        else:
            i.set_data_from_numpy(a)
        out.append(i)
    return out


def test_tritonclient_http_json_and_binary(server):
    client = thttp.InferenceServerClient(server.http.removeprefix("http://"))
    assert client.is_server_live()
    assert client.is_model_ready("mlp")
    assert client.get_model_metadata("mlp")["inputs"][0]["name"] == "input"
    x = np.random.default_rng(10).standard_normal((5, 16)).astype(np.float32)
    ref = reference("mlp.onnx", {"input": x})["output"]
    for binary in (False, True):
        i = thttp.InferInput("input", [5, 16], "FP32")
        i.set_data_from_numpy(x, binary_data=binary)
        o = thttp.InferRequestedOutput("output", binary_data=binary)
        res = client.infer("mlp", [i], outputs=[o])
        np.testing.assert_allclose(res.as_numpy("output"), ref, rtol=1e-5, atol=1e-6)
    rng = np.random.default_rng(11)
    arrays = {t: sample(t, (2, 3), rng) for t in TYPES}
    for binary in (False, True):
        res = client.infer("all_types", _inputs(thttp, arrays, binary))
        for t, a in arrays.items():
            got = res.as_numpy(f"out_{t}")
            if t == "BYTES":
                assert [g.decode() if isinstance(g, bytes) else g for g in got.flatten()] == list(a.flatten())
            else:
                np.testing.assert_array_equal(got, a)


def test_tritonclient_grpc(server):
    client = tgrpc.InferenceServerClient(server.grpc)
    assert client.is_server_live()
    assert not client.is_server_ready()  # the broken model keeps the server unready
    assert client.is_model_ready("mlp")
    assert not client.is_model_ready("broken")
    meta = client.get_server_metadata()
    assert meta.name == "tinyinfer"
    mm = client.get_model_metadata("bert")
    assert [i.name for i in mm.inputs] == ["input_ids", "attention_mask"]
    x = np.random.default_rng(12).standard_normal((3, 16)).astype(np.float32)
    i = tgrpc.InferInput("input", [3, 16], "FP32")
    i.set_data_from_numpy(x)
    res = client.infer("mlp", [i], model_version="2")
    np.testing.assert_allclose(res.as_numpy("output"), reference("mlp.onnx", {"input": x})["output"], rtol=1e-5, atol=1e-6)
    rng = np.random.default_rng(13)
    arrays = {t: sample(t, (2, 3), rng) for t in TYPES}
    res = client.infer("all_types", _inputs(tgrpc, arrays))
    for t, a in arrays.items():
        got = res.as_numpy(f"out_{t}")
        if t == "BYTES":
            assert [g.decode() for g in got.flatten()] == list(a.flatten())
        else:
            np.testing.assert_array_equal(got, a)


def test_grpc_bert_matches_onnxruntime(server):
    client = tgrpc.InferenceServerClient(server.grpc)
    rng = np.random.default_rng(14)
    ids = rng.integers(0, 8192, (1, 20)).astype(np.int64)
    mask = np.ones((1, 20), np.int64)
    a = tgrpc.InferInput("input_ids", [1, 20], "INT64")
    a.set_data_from_numpy(ids)
    b = tgrpc.InferInput("attention_mask", [1, 20], "INT64")
    b.set_data_from_numpy(mask)
    res = client.infer("bert", [a, b])
    ref = reference("bert.onnx", {"input_ids": ids, "attention_mask": mask})["last_hidden_state"]
    np.testing.assert_allclose(res.as_numpy("last_hidden_state"), ref, rtol=1e-4, atol=1e-4)


def test_grpc_errors(server):
    client = tgrpc.InferenceServerClient(server.grpc)
    x = np.zeros((1, 15), np.float32)
    i = tgrpc.InferInput("input", [1, 15], "FP32")
    i.set_data_from_numpy(x)
    for model, code in (("mlp", grpc.StatusCode.INVALID_ARGUMENT), ("nope", grpc.StatusCode.NOT_FOUND),
                        ("broken", grpc.StatusCode.UNAVAILABLE)):
        try:
            client.infer(model, [i])
            raise AssertionError("expected an error")
        except tgrpc.InferenceServerException as e:
            assert e.status() == str(code), (model, e.status(), e.message())


def test_garbage_protobuf_is_rejected(server):
    channel = grpc.insecure_channel(server.grpc)
    call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                               request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        call(b"\xff\xff\xff\xff\x0f garbage \x00\x01", timeout=10)
        raise AssertionError("garbage accepted")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.code()
    client = tgrpc.InferenceServerClient(server.grpc)
    assert client.is_server_live()
    i = tgrpc.InferInput("input", [1, 16], "FP32")
    i.set_data_from_numpy(np.ones((1, 16), np.float32))
    assert client.infer("mlp", [i]).as_numpy("output").shape == (1, 8)


def test_grpc_typed_contents_for_every_datatype(server):
    """ModelInfer with `contents` instead of raw bytes (what non-Triton clients send)."""
    from tritonclient.grpc import service_pb2

    channel = grpc.insecure_channel(server.grpc)
    call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                               request_serializer=service_pb2.ModelInferRequest.SerializeToString,
                               response_deserializer=service_pb2.ModelInferResponse.FromString)
    field = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
             "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
             "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
             "FP64": "fp64_contents", "BYTES": "bytes_contents"}
    rng = np.random.default_rng(15)
    arrays = {t: sample(t, (1, 3), rng) for t in TYPES if t != "FP16"}

    def request(with_fp16_typed):
        req = service_pb2.ModelInferRequest(model_name="all_types", id="typed")
        for t in TYPES:
            inp = req.inputs.add(name=f"in_{t}", datatype=t, shape=[1, 3])
            if t == "FP16":
                if with_fp16_typed:
                    inp.contents.fp32_contents.extend([1.0, 2.0, 3.0])
                continue
            values = [v.encode() for v in arrays[t].flatten()] if t == "BYTES" else arrays[t].flatten().tolist()
            getattr(inp.contents, field[t]).extend(values)
        return req

    try:
        call(request(with_fp16_typed=True), timeout=10)
        raise AssertionError("FP16 in typed contents must be refused")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.code()
    # Mixing is not allowed either: raw_input_contents must cover every input or none.
    req = request(with_fp16_typed=False)
    req.raw_input_contents.append(np.ones(3, np.float16).tobytes())
    try:
        call(req, timeout=10)
        raise AssertionError("partial raw_input_contents must be refused")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.code()
    # Without the FP16 input the model is missing one: also a client error.
    req = request(with_fp16_typed=False)
    del req.inputs[[i.name for i in req.inputs].index("in_FP16")]
    try:
        call(req, timeout=10)
        raise AssertionError("missing input must be refused")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "in_FP16" in e.details()
    # Out-of-range values for narrow integer types are refused, not truncated.
    req = request(with_fp16_typed=True)
    for inp in req.inputs:
        if inp.name == "in_INT8":
            inp.contents.int_contents[0] = 300
    try:
        call(req, timeout=10)
        raise AssertionError("out-of-range INT8 must be refused")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.code()


def test_grpc_typed_contents_results_match_onnxruntime(server):
    from tritonclient.grpc import service_pb2

    channel = grpc.insecure_channel(server.grpc)
    call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                               request_serializer=service_pb2.ModelInferRequest.SerializeToString,
                               response_deserializer=service_pb2.ModelInferResponse.FromString)
    x = np.random.default_rng(16).standard_normal((2, 16)).astype(np.float32)
    req = service_pb2.ModelInferRequest(model_name="mlp", model_version="1", id="abc")
    req.inputs.add(name="input", datatype="FP32", shape=[2, 16]).contents.fp32_contents.extend(x.flatten().tolist())
    res = call(req, timeout=30)
    assert res.id == "abc" and res.model_version == "1"
    assert res.outputs[0].name == "output" and list(res.outputs[0].shape) == [2, 8]
    got = np.frombuffer(res.raw_output_contents[0], np.float32).reshape(2, 8)
    np.testing.assert_allclose(got, reference("mlp.onnx", {"input": x})["output"], rtol=1e-5, atol=1e-6)
    ids = np.arange(10, dtype=np.int64).reshape(1, 10)
    req = service_pb2.ModelInferRequest(model_name="bert")
    req.inputs.add(name="input_ids", datatype="INT64", shape=[1, 10]).contents.int64_contents.extend(ids.flatten().tolist())
    req.inputs.add(name="attention_mask", datatype="INT64", shape=[1, 10]).contents.int64_contents.extend([1] * 10)
    res = call(req, timeout=60)
    got = np.frombuffer(res.raw_output_contents[0], np.float32).reshape(1, 10, 768)
    ref = reference("bert.onnx", {"input_ids": ids, "attention_mask": np.ones_like(ids)})["last_hidden_state"]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
