"""OTLP trace export with W3C context: a REST request carrying `traceparent` produces a
span exported over OTLP/gRPC (to a stand-in collector here) under the caller's trace id."""

import threading
from concurrent import futures

import grpc
import requests

from conftest import free_port

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_request_spans_are_exported_under_the_callers_trace_id(server_factory):
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
    try:
        srv = server_factory("vf-otlp", env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"})
        headers = {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
        r = requests.put(f"{srv.url}/collections/traced", json={"vectors": {"size": 2, "distance": "Dot"}},
                         headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        srv.stop()  # SIGTERM flushes the batch exporter
        assert srv.last_returncode == 0
    finally:
        collector.stop(0)
    blob = b"".join(received)
    assert bytes.fromhex(TRACE_ID) in blob, f"{len(received)} exports, trace id not found"
    assert b"http.request" in blob
