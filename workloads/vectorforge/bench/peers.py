"""ANN peers for `make bench-ann`: faiss IndexHNSWFlat, hnswlib, usearch on the
same GloVe split as benches/ann.rs (queries: rows i % 400 == 0; base: the
rest), cosine, M=16, efConstruct=200, single-threaded search over an ef sweep.
As in benches/ann.rs: one warm-up pass, each ef timed over VF_BENCH_REPS passes
(default 3) and the best reported (wall-clock QPS and QPS per CPU-second of the
process), QPS at recall@10 = 0.95 interpolated linearly
between the sweep points around it. Prints markdown tables.
Usage: peers.py GLOVE_NPY [BASE_LIMIT]"""

import os
import sys
import time

import numpy as np


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def fmt_row(row):
    return "| %s | %d | %.4f | %.0f | %.0f |" % row


def progress(msg):
    print(msg, file=sys.stderr, flush=True)


REPS = max(1, int(os.environ.get("VF_BENCH_REPS", "3")))


def timed(search, n):
    """Best wall-clock QPS and best QPS per CPU-second over REPS passes of `search()`
    (which answers n queries), and its result."""
    best, best_cpu, out = 0.0, 0.0, None
    for _ in range(REPS):
        t, c = time.perf_counter(), time.process_time()
        out = search()
        best = max(best, n / (time.perf_counter() - t))
        best_cpu = max(best_cpu, n / max(time.process_time() - c, 1e-9))
    return (best, best_cpu), out


def qps_at(points, target=0.95):
    """QPS where recall crosses target, linear between the sweep points around it."""
    for i, (r1, q1) in enumerate(points):
        if r1 >= target:
            if r1 == target:
                return q1
            if i == 0:
                return None
            r0, q0 = points[i - 1]
            return q0 + (q1 - q0) * (target - r0) / (r1 - r0)
    return None


def recall(found, truth):
    hit = sum(len(set(f[:10]) & set(t)) for f, t in zip(found, truth))
    return hit / (len(truth) * 10)


def main():
    path = sys.argv[1]
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else None
    m = np.ascontiguousarray(np.load(path).astype(np.float32))
    idx = np.arange(m.shape[0])
    queries = m[idx % 400 == 0]
    base = m[idx % 400 != 0]
    if limit:
        base = base[:limit]
    base = base / np.linalg.norm(base, axis=1, keepdims=True)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    base = np.ascontiguousarray(base.astype(np.float32))
    qn = np.ascontiguousarray(qn.astype(np.float32))
    truth = []
    for s in range(0, len(qn), 100):
        sims = qn[s : s + 100] @ base.T
        top = np.argpartition(-sims, 10, axis=1)[:, :10]
        truth.extend(list(r) for r in top)
    efs = [
        int(x)
        for x in os.environ.get(
            "VF_BENCH_EF", "16,32,48,64,72,80,88,96,104,112,120,128,144,160,192,256"
        ).split(",")
    ]
    threads = os.cpu_count()
    builds = []
    rows = []
    # VF_PEERS=hnswlib,usearch runs a subset (default: all three).
    peers = os.environ.get("VF_PEERS", "faiss,hnswlib,usearch").split(",")
    if "faiss" in peers:
        run_faiss(base, qn, truth, efs, threads, builds, rows)
    if "hnswlib" in peers:
        run_hnswlib(base, qn, truth, efs, threads, builds, rows)
    if "usearch" in peers:
        run_usearch(base, qn, truth, efs, threads, builds, rows)

    print("\n### peers build (%d points, %d threads)\n" % (len(base), threads))
    print("| library | build (s) | RSS growth (MiB) |")
    print("|---|---|---|")
    for name, secs, mem in builds:
        print("| %s | %.1f | %.0f |" % (name, secs, mem))
    print("\n### peers search (single thread, batch of 1,000 queries, k=10, best of %d passes)\n" % REPS)
    print("| library | ef | recall@10 | QPS | QPS per CPU-second |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(fmt_row(row))
    print()
    for lib in dict.fromkeys(r[0] for r in rows):
        q = qps_at([(r[2], r[3]) for r in rows if r[0] == lib])
        c = qps_at([(r[2], r[4]) for r in rows if r[0] == lib])
        if q is None or c is None:
            print("%s: recall@10 = 0.95 not bracketed by the sweep" % lib)
        else:
            print("%s at recall@10 = 0.95 (interpolated): %.0f QPS, %.0f QPS per CPU-second" % (lib, q, c))


def run_faiss(base, qn, truth, efs, threads, builds, rows):
    import faiss

    faiss.omp_set_num_threads(threads)
    r0 = rss_mib()
    t = time.perf_counter()
    fi = faiss.IndexHNSWFlat(base.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
    fi.hnsw.efConstruction = 200
    fi.add(base)
    builds.append(("faiss-cpu %s IndexHNSWFlat" % faiss.__version__, time.perf_counter() - t, rss_mib() - r0))
    progress("build %s: %.1f s" % builds[-1][:2])
    faiss.omp_set_num_threads(1)
    fi.hnsw.efSearch = max(efs)
    fi.search(qn, 10)
    for ef in efs:
        fi.hnsw.efSearch = ef
        qps, (_, labels) = timed(lambda: fi.search(qn, 10), len(qn))
        rows.append(("faiss", ef, recall(labels.tolist(), truth), *qps))
        progress(fmt_row(rows[-1]))


def run_hnswlib(base, qn, truth, efs, threads, builds, rows):
    import hnswlib

    r0 = rss_mib()
    t = time.perf_counter()
    hi = hnswlib.Index(space="cosine", dim=base.shape[1])
    hi.init_index(max_elements=len(base), ef_construction=200, M=16)
    hi.add_items(base, np.arange(len(base)), num_threads=threads)
    builds.append(("hnswlib 0.8.0", time.perf_counter() - t, rss_mib() - r0))
    progress("build %s: %.1f s" % builds[-1][:2])
    hi.set_ef(max(efs))
    hi.knn_query(qn, k=10, num_threads=1)
    for ef in efs:
        hi.set_ef(max(ef, 10))
        qps, (labels, _) = timed(lambda: hi.knn_query(qn, k=10, num_threads=1), len(qn))
        rows.append(("hnswlib", ef, recall(labels.tolist(), truth), *qps))
        progress(fmt_row(rows[-1]))


def run_usearch(base, qn, truth, efs, threads, builds, rows):
    import usearch
    from usearch.index import Index

    r0 = rss_mib()
    t = time.perf_counter()
    ui = Index(ndim=base.shape[1], metric="cos", dtype="f32", connectivity=16, expansion_add=200)
    ui.add(np.arange(len(base)), base, threads=threads)
    builds.append(("usearch %s" % getattr(usearch, "__version__", getattr(usearch, "VERSION", "?")), time.perf_counter() - t, rss_mib() - r0))
    progress("build %s: %.1f s" % builds[-1][:2])
    ui.expansion_search = max(efs)
    ui.search(qn, 10, threads=1)
    for ef in efs:
        ui.expansion_search = ef
        qps, res = timed(lambda: ui.search(qn, 10, threads=1), len(qn))
        rows.append(("usearch", ef, recall(res.keys.tolist(), truth), *qps))
        progress(fmt_row(rows[-1]))



if __name__ == "__main__":
    main()
