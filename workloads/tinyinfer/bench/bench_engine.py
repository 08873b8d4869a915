"""`make bench-engine`: prints tinyinfer's figures (not a test, nothing is asserted).

1. p50/p99 latency at batch 1 on the BERT-sized encoder through REST and gRPC, against
   the same ONNX Runtime session code called in-process (examples/bench_inprocess.rs).
2. Throughput at 1, 8 and 64 concurrent clients with dynamic batching on and off.
3. MiniLM sentence-embedding throughput (sentences/s).
"""

import concurrent.futures as cf
import json
import os
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import requests
from tritonclient.grpc import service_pb2

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))
from conftest import MINILM, MODELS, start_server, stop_server  # noqa: E402

INPROC = os.environ.get("TINYINFER_BENCH_INPROC", "")
LAT_SEQ, LAT_ITERS = 128, int(os.environ.get("BENCH_LAT_ITERS", "200"))
TP_SEQ, TP_SECONDS = 32, float(os.environ.get("BENCH_TP_SECONDS", "8"))


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round((len(v) - 1) * p)))]


def bert_ids(seq):
    return (1 + np.arange(seq, dtype=np.int64) % 1000).reshape(1, seq)


def rest_body(seq):
    ids = bert_ids(seq)
    raw = ids.tobytes()
    head = {"inputs": [
        {"name": n, "shape": [1, seq], "datatype": "INT64", "parameters": {"binary_data_size": len(raw)}}
        for n in ("input_ids", "attention_mask")], "parameters": {"binary_data_output": True}}
    h = json.dumps(head).encode()
    return {"Inference-Header-Content-Length": str(len(h))}, h + raw + np.ones_like(ids).tobytes()


def grpc_request(model, seq):
    ids = bert_ids(seq)
    req = service_pb2.ModelInferRequest(model_name=model)
    for n in ("input_ids", "attention_mask"):
        t = req.inputs.add()
        t.name, t.datatype = n, "INT64"
        t.shape.extend([1, seq])
    req.raw_input_contents.extend([ids.tobytes(), np.ones_like(ids).tobytes()])
    return req.SerializeToString()


def grpc_call(server):
    channel = grpc.insecure_channel(server.grpc, options=[("grpc.max_receive_message_length", 1 << 28)])
    return channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                               request_serializer=lambda b: b, response_deserializer=lambda b: b)


def latency(server):
    headers, body = rest_body(LAT_SEQ)
    session = requests.Session()
    url = f"{server.http}/v2/models/bert_nb/infer"
    rest = []
    for i in range(LAT_ITERS + 20):
        t = time.perf_counter()
        r = session.post(url, data=body, headers=headers)
        dt = (time.perf_counter() - t) * 1000
        assert r.status_code == 200, r.text
        if i >= 20:
            rest.append(dt)
    call, req = grpc_call(server), grpc_request("bert_nb", LAT_SEQ)
    grpc_lat = []
    for i in range(LAT_ITERS + 20):
        t = time.perf_counter()
        call(req)
        dt = (time.perf_counter() - t) * 1000
        if i >= 20:
            grpc_lat.append(dt)
    return rest, grpc_lat


def inprocess():
    out = subprocess.run([INPROC, os.path.join(MODELS, "bert.onnx"), str(LAT_SEQ), str(LAT_ITERS)],
                         capture_output=True, text=True, check=True, env=dict(os.environ, RUST_LOG="warn"))
    return json.loads(out.stdout.strip().splitlines()[-1])


def throughput(server, model, clients):
    headers, body = rest_body(TP_SEQ)
    url = f"{server.http}/v2/models/{model}/infer"
    stop = time.perf_counter() + TP_SECONDS
    lat, lock = [], threading.Lock()

    def worker():
        s = requests.Session()
        mine = []
        while time.perf_counter() < stop:
            t = time.perf_counter()
            r = s.post(url, data=body, headers=headers)
            if r.status_code == 200:
                mine.append((time.perf_counter() - t) * 1000)
        with lock:
            lat.extend(mine)

    with cf.ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(worker) for _ in range(clients)]:
            f.result()
    return len(lat) / TP_SECONDS, pct(lat, 0.5), pct(lat, 0.99)


SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Kubernetes schedules containers onto nodes according to resource requests.",
    "She ordered a cup of coffee and opened her laptop to read the news.",
    "Dynamic batching merges concurrent requests into a single model run.",
]


def minilm(server, clients, per_request=16):
    body = {"inputs": [{"name": "text", "shape": [per_request], "datatype": "BYTES",
                        "data": [SENTENCES[i % 4] for i in range(per_request)]}],
            "outputs": [{"name": "embedding", "parameters": {"binary_data": True}}]}
    url = f"{server.http}/v2/models/minilm/infer"
    stop = time.perf_counter() + TP_SECONDS
    done, lock = [0], threading.Lock()

    def worker():
        s, n = requests.Session(), 0
        while time.perf_counter() < stop:
            if s.post(url, json=body).status_code == 200:
                n += per_request
        with lock:
            done[0] += n

    with cf.ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(worker) for _ in range(clients)]:
            f.result()
    return done[0] / TP_SECONDS


def main():
    base = inprocess() if INPROC else None
    srv = start_server([
        f"name=bert_nb,uri={MODELS}/bert.onnx,maxBatchSize=1",
        f"name=bert_b,uri={MODELS}/bert.onnx,maxBatchSize=64,maxQueueDelayUs=2000",
        f"name=minilm,uri={MINILM}/model.onnx,tokenizer={MINILM}/tokenizer.json,maxBatchSize=64,maxQueueDelayUs=2000",
    ], env_extra={"RUST_LOG": "warn"})
    try:
        rest, grpc_lat = latency(srv)
        print(f"\n### (1) Latency, BERT-sized encoder (2 layers, hidden 768), batch 1, seq {LAT_SEQ}, {LAT_ITERS} requests\n")
        print("| path | p50 ms | p99 ms | p50 overhead vs in-process |")
        print("| --- | --- | --- | --- |")
        if base:
            print(f"| ONNX Runtime in-process | {base['p50_ms']:.2f} | {base['p99_ms']:.2f} | – |")
        for name, v in (("REST (binary)", rest), ("gRPC (raw)", grpc_lat)):
            over = f"{(pct(v, 0.5) / base['p50_ms'] - 1) * 100:+.1f} %" if base else "n/a"
            print(f"| tinyinfer {name} | {pct(v, 0.5):.2f} | {pct(v, 0.99):.2f} | {over} |")

        print(f"\n### (2) Throughput, BERT-sized encoder, batch-1 requests, seq {TP_SEQ}, REST, {TP_SECONDS:.0f} s each\n")
        print("| clients | batching off req/s | p50 ms | batching on req/s | p50 ms | speed-up |")
        print("| --- | --- | --- | --- | --- | --- |")
        for clients in (1, 8, 64):
            off = throughput(srv, "bert_nb", clients)
            on = throughput(srv, "bert_b", clients)
            print(f"| {clients} | {off[0]:.1f} | {off[1]:.1f} | {on[0]:.1f} | {on[1]:.1f} | {on[0] / off[0]:.2f}x |")

        print(f"\n### (3) MiniLM-L6-v2 int8 embeddings, 16 sentences per request, {TP_SECONDS:.0f} s each\n")
        print("| clients | sentences/s |")
        print("| --- | --- |")
        for clients in (1, 8):
            print(f"| {clients} | {minilm(srv, clients):.1f} |")
        print(f"\nmachine: {os.cpu_count()} CPUs (shared); server: {os.path.basename(srv.log_path)}")
    finally:
        stop_server(srv)


if __name__ == "__main__":
    main()
