"""`make bench-engine`: prints tinyinfer's figures (not a test, nothing is asserted).

1. p50/p99 latency at batch 1 on the BERT-sized encoder through REST and gRPC, against
   the same ONNX Runtime session code called in-process (examples/bench_inprocess.rs).
2. Throughput at 1, 8 and 64 concurrent clients with dynamic batching on and off.
3. MiniLM sentence-embedding throughput (sentences/s).
"""

import concurrent.futures as cf
import http.client
import json
import os
import re
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
LAT_ROUNDS = 8  # in-process, REST and gRPC interleave so background load hits all alike
TP_SEQS = [int(x) for x in os.environ.get("BENCH_TP_SEQS", "8,32").split(",")]
TP_SECONDS = float(os.environ.get("BENCH_TP_SECONDS", "8"))


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


def latency(server, iters):
    headers, body = rest_body(LAT_SEQ)
    # http.client on one keep-alive connection: `requests` adds ~1-3 ms of Python per
    # call on a 393 KB response, which would be measured as server overhead
    host, port = server.http.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port))
    headers = dict(headers, **{"Content-Type": "application/octet-stream"})
    rest = []
    for i in range(iters + 20):
        t = time.perf_counter()
        conn.request("POST", "/v2/models/bert_nb/infer", body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        dt = (time.perf_counter() - t) * 1000
        assert r.status == 200, data[:200]
        if i >= 20:
            rest.append(dt)
    conn.close()
    call, req = grpc_call(server), grpc_request("bert_nb", LAT_SEQ)
    grpc_lat = []
    for i in range(iters + 20):
        t = time.perf_counter()
        call(req)
        dt = (time.perf_counter() - t) * 1000
        if i >= 20:
            grpc_lat.append(dt)
    return rest, grpc_lat


def inprocess(iters):
    out = subprocess.run([INPROC, os.path.join(MODELS, "bert.onnx"), str(LAT_SEQ), str(iters), "raw"],
                         capture_output=True, text=True, check=True, env=dict(os.environ, RUST_LOG="warn"))
    return json.loads(out.stdout.strip().splitlines()[-1])["samples_ms"]


def inprocess_rows_per_s(seq, batch, iters):
    out = subprocess.run([INPROC, os.path.join(MODELS, "bert.onnx"), str(seq), str(iters), str(batch)],
                         capture_output=True, text=True, check=True, env=dict(os.environ, RUST_LOG="warn"))
    return json.loads(out.stdout.strip().splitlines()[-1])["rows_per_s"]


def batch_stats(server, model):
    text = requests.get(f"{server.http}/metrics").text
    def get(k):
        m = re.search(rf'tinyinfer_batch_size_{k}\{{model="{model}",version="1"\}} ([0-9.e+]+)', text)
        return float(m.group(1)) if m else 0.0  # absent until the first batch ran

    return get("sum"), get("count")


def throughput(server, model, clients, seq):
    headers, body = rest_body(seq)
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
    srv = start_server([
        f"name=bert_nb,uri={MODELS}/bert.onnx,maxBatchSize=1",
        f"name=bert_b,uri={MODELS}/bert.onnx,maxBatchSize=64,maxQueueDelayUs=2000",
        f"name=minilm,uri={MINILM}/model.onnx,tokenizer={MINILM}/tokenizer.json,maxBatchSize=64,maxQueueDelayUs=2000",
    ], env_extra={"RUST_LOG": "warn"})
    try:
        base, rest, grpc_lat = [], [], []
        per_round = max(1, LAT_ITERS // LAT_ROUNDS)
        for _ in range(LAT_ROUNDS):
            if INPROC:
                base += inprocess(per_round)
            r, g = latency(srv, per_round)
            rest += r
            grpc_lat += g
        b50 = pct(base, 0.5) if base else None
        print(f"\n### (1) Latency, BERT-sized encoder (2 layers, hidden 768), batch 1, seq {LAT_SEQ}, "
              f"{len(rest)} requests per path in {LAT_ROUNDS} interleaved rounds\n")
        print("| path | p50 ms | p99 ms | p50 overhead vs in-process |")
        print("| --- | --- | --- | --- |")
        if base:
            print(f"| ONNX Runtime in-process (same session code) | {b50:.2f} | {pct(base, 0.99):.2f} | – |")
        for name, v in (("REST (binary extension)", rest), ("gRPC (raw contents)", grpc_lat)):
            over = f"{(pct(v, 0.5) / b50 - 1) * 100:+.1f} %" if base else "n/a"
            print(f"| tinyinfer {name} | {pct(v, 0.5):.2f} | {pct(v, 0.99):.2f} | {over} |")

        for seq in TP_SEQS:
            print(f"\n### (2) Throughput, BERT-sized encoder, batch-1 requests of {seq} tokens, REST, {TP_SECONDS:.0f} s each\n")
            print("| clients | batching off req/s | p50 ms | batching on req/s | p50 ms | mean batch | speed-up |")
            print("| --- | --- | --- | --- | --- | --- | --- |")
            for clients in (1, 8, 64):
                off = throughput(srv, "bert_nb", clients, seq)
                s0, c0 = batch_stats(srv, "bert_b")
                on = throughput(srv, "bert_b", clients, seq)
                s1, c1 = batch_stats(srv, "bert_b")
                mean = (s1 - s0) / max(c1 - c0, 1)
                print(f"| {clients} | {off[0]:.1f} | {off[1]:.1f} | {on[0]:.1f} | {on[1]:.1f} | {mean:.1f} | {on[0] / off[0]:.2f}x |")

        if INPROC:
            print("\n### (2b) Ceiling: the same session in-process, rows/s at batch 1 vs batch 64\n")
            print("| tokens | batch 1 rows/s | batch 64 rows/s | ratio |")
            print("| --- | --- | --- | --- |")
            for seq in TP_SEQS:
                one = inprocess_rows_per_s(seq, 1, 40)
                many = inprocess_rows_per_s(seq, 64, 4)
                print(f"| {seq} | {one:.1f} | {many:.1f} | {many / one:.2f}x |")

        print(f"\n### (3) MiniLM-L6-v2 int8 embeddings, 16 sentences per request, {TP_SECONDS:.0f} s each\n")
        print("| clients | sentences/s |")
        print("| --- | --- |")
        for clients in (1, 8):
            print(f"| {clients} | {minilm(srv, clients):.1f} |")
        print(f"\nmachine: {os.cpu_count()} CPUs, load average at the end {os.getloadavg()[0]:.1f} (shared with other builds)")
    finally:
        stop_server(srv)


if __name__ == "__main__":
    main()
