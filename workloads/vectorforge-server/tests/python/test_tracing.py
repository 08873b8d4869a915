"""OTLP trace export with W3C context: a REST request carrying `traceparent` produces a
span exported over OTLP/gRPC (to a stand-in collector here) under the caller's trace id."""

import requests

from otlp_collector import StandInCollector

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_request_spans_are_exported_under_the_callers_trace_id(server_factory):
    with StandInCollector() as collector:
        srv = server_factory("vf-otlp", env={"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint})
        headers = {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
        r = requests.put(f"{srv.url}/collections/traced", json={"vectors": {"size": 2, "distance": "Dot"}},
                         headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        srv.stop()  # SIGTERM flushes the batch exporter
        assert srv.last_returncode == 0
    blob = collector.blob()
    assert bytes.fromhex(TRACE_ID) in blob, f"{collector.exports()} exports, trace id not found"
    assert b"http.request" in blob
