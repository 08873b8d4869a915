"""OTLP trace export with W3C context: a request carrying `traceparent` produces spans
exported (over OTLP/gRPC, to a stand-in collector here) under the caller's trace id."""

import numpy as np
import requests

from conftest import MODELS, start_server, stop_server
from helpers import json_input
from otlp_collector import StandInCollector

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_spans_exported_with_incoming_trace_id():
    with StandInCollector() as collector:
        srv = start_server([f"name=mlp,uri={MODELS}/mlp.onnx"],
                           env_extra={"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint})
        try:
            body = {"inputs": [json_input("input", np.ones((1, 16), np.float32), "FP32")]}
            headers = {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
            assert requests.post(f"{srv.http}/v2/models/mlp/infer", json=body, headers=headers).status_code == 200
        finally:
            stop_server(srv)  # SIGTERM flushes the batch exporter
    assert srv.proc.returncode == 0
    blob = collector.blob()
    assert bytes.fromhex(TRACE_ID) in blob, f"{collector.exports()} exports, trace id not found"
    assert b"infer" in blob
