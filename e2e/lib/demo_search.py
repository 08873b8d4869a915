#!/usr/bin/env python3
"""The end of `make up`: semantic search across the whole stack.

Embeds a few sentences with the sample InferenceService (MiniLM on tinyinfer, through
the TrafficPolicy's gateway when given), upserts them into the sample VectorCollection
through one pod, searches with the embedding of a question through a pod of another
shard, and shows how the points spread over the shards (each pod's own count).
Standard library only. Usage: demo_search.py INFER_URL VC_URL_A VC_URL_B [VC_URL ...]
"""

import json
import sys
import urllib.error
import urllib.request

SENTENCES = [
    "The cat sleeps on the warm windowsill.",
    "Stock markets fell sharply after the announcement.",
    "A recipe for fresh tomato pasta with basil.",
    "The goalkeeper saved a penalty in the final minute.",
    "Rain is expected across the north tomorrow.",
    "Kubernetes restarts a container when its liveness probe fails.",
]
QUESTION = "Which sentence is about football?"


def call(url, body=None, method="POST"):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def embed(infer_url, texts):
    body = {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}
    out = call(f"{infer_url}/v2/models/minilm/infer", body)["outputs"][0]
    dim = out["shape"][-1]
    data = out["data"]
    return [data[i * dim:(i + 1) * dim] for i in range(len(texts))]


def own_points(vc_url):
    with urllib.request.urlopen(f"{vc_url}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith('vectorforge_collection_points{collection="docs"}'):
                return int(float(line.rsplit(" ", 1)[1]))
    return None


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    infer_url, writer, reader, *rest = sys.argv[1:]
    try:
        vectors = embed(infer_url, SENTENCES)
        points = [{"id": i + 1, "vector": v, "payload": {"text": t}}
                  for i, (t, v) in enumerate(zip(SENTENCES, vectors))]
        call(f"{writer}/collections/docs/points?wait=true", {"points": points}, method="PUT")
        print(f"upserted {len(points)} embedded sentences through {writer}")
        q = embed(infer_url, [QUESTION])[0]
        hits = call(f"{reader}/collections/docs/points/search",
                    {"vector": q, "limit": 2, "with_payload": True})["result"]
        print(f"searched \"{QUESTION}\" through {reader}:")
        for h in hits:
            print(f"  {h['score']:.3f}  {(h.get('payload') or {}).get('text', 'point ' + str(h['id']))}")
        for url in [writer, reader, *rest]:
            print(f"  {url} holds {own_points(url)} of the points itself")
    except (urllib.error.URLError, KeyError, ValueError, OSError) as e:
        print(f"(the search demo did not answer: {e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
