"""A stand-in OTLP/gRPC trace collector for the workloads' tracing tests.

It answers `opentelemetry.proto.collector.trace.v1.TraceService/Export` with an empty
response and keeps the raw bytes of every request, so a test can look for a trace id or a
span name in them without decoding protobuf. The test suites put this folder on
`sys.path` in their conftest.
"""

import threading
from concurrent import futures

import grpc


class StandInCollector:
    """`with StandInCollector() as c:` listens on a free loopback port (`c.endpoint`)
    until the block ends; `c.blob()` is everything exported to it."""

    def __init__(self):
        self._received, self._lock = [], threading.Lock()
        handler = grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService",
            {"Export": grpc.unary_unary_rpc_method_handler(
                self._export, request_deserializer=lambda b: b, response_serializer=lambda b: b)})
        self._server = grpc.server(futures.ThreadPoolExecutor(2))
        self._server.add_generic_rpc_handlers((handler,))
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"http://127.0.0.1:{port}"

    def _export(self, request_bytes, _context):
        with self._lock:
            self._received.append(request_bytes)
        return b""  # an empty ExportTraceServiceResponse

    def exports(self):
        """How many export requests arrived."""
        with self._lock:
            return len(self._received)

    def blob(self):
        """The bytes of every export request, concatenated."""
        with self._lock:
            return b"".join(self._received)

    def __enter__(self):
        self._server.start()
        return self

    def __exit__(self, *exc):
        self._server.stop(0)
        return False
