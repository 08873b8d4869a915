"""OTLP trace export with W3C context: a request carrying `traceparent` produces spans
exported (over OTLP/gRPC, to a stand-in collector here) under the caller's trace id."""

import threading
from concurrent import futures

import grpc
import numpy as np
import requests

from conftest import MODELS, free_port, start_server, stop_server
from helpers import json_input

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_spans_exported_with_incoming_trace_id():
    received, lock = [], threading.Lock()

    def export(request_bytes, context):
        with lock:
            received.append(request_bytes)
        return b""  # an empty ExportTraceServiceResponse

    handler = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {"Export": grpc.unary_unary_rpc_method_handler(
            export, request_deserializer=lambda b: b, response_serializer=lambda b: b)})
    collector = grpc.server(futures.ThreadPoolExecutor(2))
    collector.add_generic_rpc_handlers((handler,))
    port = free_port()
    collector.add_insecure_port(f"127.0.0.1:{port}")
    collector.start()
    srv = start_server([f"name=mlp,uri={MODELS}/mlp.onnx"],
                       env_extra={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"})
    try:
        body = {"inputs": [json_input("input", np.ones((1, 16), np.float32), "FP32")]}
        headers = {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
        assert requests.post(f"{srv.http}/v2/models/mlp/infer", json=body, headers=headers).status_code == 200
    finally:
        stop_server(srv)  # SIGTERM flushes the batch exporter
        collector.stop(0)
    assert srv.proc.returncode == 0
    blob = b"".join(received)
    assert bytes.fromhex(TRACE_ID) in blob, f"{len(received)} exports, trace id not found"
    assert b"infer" in blob
