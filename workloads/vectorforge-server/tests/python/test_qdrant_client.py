"""The real qdrant-client (REST) against the real vectorforge binary.

Every expectation comes from a Python model of the collection (`Model`): vectors, payloads
and which points are alive, plus a Python evaluator of Qdrant filters (`eval_filter`) and
numpy brute force for nearest neighbours. Tests that change the collection update the
model the same way, so each test's expectations hold whatever ran before it.

One server (module scope) holds:
  vf_named  10,000 points, named vectors text (32, Cosine) and image (16, Euclid),
            payloads with keywords, numbers, arrays, a nested object, sometimes-empty
            fields and datetimes; payload indexes on city, price, rating, tags, meta.color
  vf_plain  300 points, one unnamed vector (8, Dot)
"""

import datetime as dt
import json
import time
import uuid
from importlib.metadata import version as dist_version

import numpy as np
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.common.version_check import is_compatible
from qdrant_client.http.exceptions import UnexpectedResponse

NAMED = "vf_named"
PLAIN = "vf_plain"
N = 10_000
TEXT_DIM, IMAGE_DIM, PLAIN_DIM = 32, 16, 8
PLAIN_N = 300
SEED = 20240601
UPSERT_BATCH = 1000
SCORE_TOL = 1e-4
VECTOR_TOL = 1e-5
RECALL_MIN = 0.9
RECALL_QUERIES = 20
FULL_SCAN_THRESHOLD = 10
INDEX_TIMEOUT_S = 600  # background HNSW build of 2 x 10,000 vectors in a debug build

CITIES = ["Oslo", "Lima", "Paris", "Tokyo", "Nairobi"]
COLORS = ["red", "green", "blue", "black"]
TAGS = ["new", "sale", "eco", "premium", "limited", "vintage", "local", "bulk"]
EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)

INDEXES = {
    "city": models.PayloadSchemaType.KEYWORD,
    "price": models.PayloadSchemaType.INTEGER,
    "rating": models.PayloadSchemaType.FLOAT,
    "tags": models.PayloadSchemaType.KEYWORD,
    "meta.color": models.PayloadSchemaType.KEYWORD,
}
HIGHER_IS_BETTER = {"text": True, "image": False, None: True}


# ====================================================================== the model
def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


class Model:
    """What the collection holds, row-indexed; ids are distinct, large and uploaded shuffled."""

    def __init__(self, seed=SEED, n=N):
        rng = np.random.default_rng(seed)
        ids = np.unique(rng.integers(1, 10**12, size=n + n // 10))[: n]
        assert len(ids) == n
        self.ids = [int(x) for x in ids]
        self.row = {pid: r for r, pid in enumerate(self.ids)}
        self.text = rng.standard_normal((n, TEXT_DIM)).astype(np.float32)
        self.image = rng.standard_normal((n, IMAGE_DIM)).astype(np.float32)
        self.payloads = [self._payload(rng, i) for i in range(n)]
        self.alive = np.ones(n, dtype=bool)
        self.upload_order = [int(r) for r in rng.permutation(n)]
        # Disjoint id ranges for the tests that mutate points (in a fixed shuffled order).
        self.reserved = [self.ids[int(r)] for r in rng.permutation(n)]
        self.query_rng = np.random.default_rng(seed + 1)
        self.refresh()

    @staticmethod
    def _payload(rng, i):
        p = {
            "city": CITIES[int(rng.integers(len(CITIES)))],
            "price": int(rng.integers(0, 1000)),
            "rating": round(float(rng.uniform(0, 5)), 2),
            "tags": sorted({TAGS[int(t)] for t in rng.integers(0, len(TAGS), size=int(rng.integers(0, 4)))}),
            "meta": {"color": COLORS[int(rng.integers(len(COLORS)))], "size": int(rng.integers(1, 6))},
            "created": (EPOCH + dt.timedelta(seconds=int(rng.integers(0, 365 * 86400)))).strftime(
                "%Y-%m-%dT%H:%M:%SZ"),
        }
        # opt: 40% absent, 20% null, 10% [], 15% a string, 15% a list of numbers.
        u = rng.uniform()
        if u < 0.4:
            pass
        elif u < 0.6:
            p["opt"] = None
        elif u < 0.7:
            p["opt"] = []
        elif u < 0.85:
            p["opt"] = f"x{i}"
        else:
            p["opt"] = [1, 2]
        return p

    def refresh(self):
        self.text_unit = unit(self.text)

    def point_struct(self, r):
        return models.PointStruct(id=self.ids[r], vector={"text": self.text[r].tolist(), "image": self.image[r].tolist()},
                                  payload=self.payloads[r])

    def alive_ids(self):
        return sorted(self.ids[r] for r in np.nonzero(self.alive)[0])

    def mask(self, flt):
        return np.array([self.alive[r] and eval_filter(flt, self.ids[r], self.payloads[r]) for r in range(len(self.ids))],
                        dtype=bool)

    def scores(self, using, q):
        q = np.asarray(q, dtype=np.float64)
        if using == "text":
            return self.text_unit @ unit(q)
        if using == "image":
            return np.sqrt(((self.image.astype(np.float64) - q) ** 2).sum(axis=1))
        raise ValueError(using)

    def query(self, using):
        dim = TEXT_DIM if using == "text" else IMAGE_DIM
        return self.query_rng.standard_normal(dim).astype(np.float32)


def topk(scores, mask, k, higher_is_better, offset=0):
    """Row indices of the best k (after offset) among mask, best first."""
    rows = np.nonzero(mask)[0]
    s = scores[rows]
    order = np.argsort(-s if higher_is_better else s, kind="stable")
    return [int(r) for r in rows[order[offset: offset + k]]]


# ====================================================================== filter semantics
def _as_list(x):
    if x is None:
        return []
    return x if isinstance(x, list) else [x]


def raw_values(payload, key):
    """Values stored at a dotted key (`meta.color`), before arrays are flattened."""
    cur = [payload]
    for part in key.split("."):
        nxt = []
        for v in cur:
            for item in (v if isinstance(v, list) else [v]):
                if isinstance(item, dict) and part in item:
                    nxt.append(item[part])
        cur = nxt
    return cur


def flat_values(payload, key):
    out = []
    for v in raw_values(payload, key):
        out.extend(v if isinstance(v, list) else [v])
    return out


def _same(a, b):
    """Qdrant's typed equality: keyword == str, integer == int (never bool)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return a == b


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _parse_dt(v):
    if isinstance(v, dt.datetime):
        return v if v.tzinfo else v.replace(tzinfo=dt.timezone.utc)
    if isinstance(v, dt.date):
        return dt.datetime(v.year, v.month, v.day, tzinfo=dt.timezone.utc)
    try:
        return _parse_dt(dt.datetime.fromisoformat(v))
    except (TypeError, ValueError):
        return None


def _in_range(v, rng):
    if isinstance(rng, models.DatetimeRange):
        v = _parse_dt(v) if isinstance(v, str) else None
        conv = _parse_dt
    else:
        v = v if _number(v) else None
        conv = float
    if v is None:
        return False
    return ((rng.gt is None or v > conv(rng.gt)) and (rng.gte is None or v >= conv(rng.gte))
            and (rng.lt is None or v < conv(rng.lt)) and (rng.lte is None or v <= conv(rng.lte)))


_ID_SETS = {}


def _id_set(cond):
    key = id(cond)
    if key not in _ID_SETS or _ID_SETS[key][0] is not cond:
        _ID_SETS[key] = (cond, set(cond.has_id))
    return _ID_SETS[key][1]


def eval_condition(c, pid, payload):
    if isinstance(c, models.Filter):
        return eval_filter(c, pid, payload)
    if isinstance(c, models.HasIdCondition):
        return pid in _id_set(c)
    if isinstance(c, models.IsEmptyCondition):
        return all(v is None for v in flat_values(payload, c.is_empty.key))
    if isinstance(c, models.IsNullCondition):
        return any(v is None for v in raw_values(payload, c.is_null.key))
    if isinstance(c, models.FieldCondition):
        vals = [v for v in flat_values(payload, c.key) if v is not None]
        if c.match is not None:
            m = c.match
            if isinstance(m, models.MatchValue):
                return any(_same(v, m.value) for v in vals)
            if isinstance(m, models.MatchAny):
                return any(_same(v, a) for v in vals for a in m.any)
            if isinstance(m, models.MatchExcept):
                return any(not any(_same(v, e) for e in m.except_) for v in vals)
            raise NotImplementedError(m)
        if c.range is not None:
            return any(_in_range(v, c.range) for v in vals)
    raise NotImplementedError(c)


def eval_filter(f, pid, payload):
    if f is None:
        return True
    if not all(eval_condition(c, pid, payload) for c in _as_list(f.must)):
        return False
    should = _as_list(f.should)
    if should and not any(eval_condition(c, pid, payload) for c in should):
        return False
    return not any(eval_condition(c, pid, payload) for c in _as_list(f.must_not))


def fc(key, **kw):
    return models.FieldCondition(key=key, **kw)


def mv(key, value):
    return fc(key, match=models.MatchValue(value=value))


# Named filters (functions of the model where they name ids). Selectivity in comments.
FILTERS = {
    "none": lambda m: None,
    "city_eq": lambda m: models.Filter(must=[mv("city", "Oslo")]),  # ~20%
    "city_any_price_range": lambda m: models.Filter(must=[
        fc("city", match=models.MatchAny(any=["Lima", "Tokyo"])),
        fc("price", range=models.Range(gte=100, lt=600))]),  # ~20%
    "city_except_rating_lte": lambda m: models.Filter(must=[
        fc("city", match=models.MatchExcept(**{"except": ["Oslo", "Lima", "Paris"]})),
        fc("rating", range=models.Range(lte=2.005))]),  # ~16%
    "price_gt_lte": lambda m: models.Filter(must=[fc("price", range=models.Range(gt=500, lte=700))]),
    "tags_should": lambda m: models.Filter(should=[mv("tags", "eco"), mv("tags", "vintage")]),
    "tags_any_must_not": lambda m: models.Filter(
        must=[fc("tags", match=models.MatchAny(any=["sale", "premium"]))],
        must_not=[mv("city", "Nairobi"), fc("rating", range=models.Range(gt=4.005))]),
    "nested_meta": lambda m: models.Filter(must=[
        mv("meta.color", "green"), fc("meta.size", range=models.Range(gte=2, lte=3))]),  # ~10%
    "nested_size_match": lambda m: models.Filter(must=[mv("meta.size", 5)], must_not=[mv("meta.color", "red")]),
    "is_empty_opt": lambda m: models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key="opt"))]),
    "is_null_opt": lambda m: models.Filter(must=[models.IsNullCondition(is_null=models.PayloadField(key="opt"))]),
    "not_empty_opt": lambda m: models.Filter(
        must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key="opt"))]),
    "has_id": lambda m: models.Filter(must=[models.HasIdCondition(has_id=m.reserved[-400:])]),  # 4%
    "has_id_should_city": lambda m: models.Filter(
        must=[models.HasIdCondition(has_id=m.reserved[-2000:])],
        should=[mv("city", "Paris"), mv("meta.color", "blue")]),
    "combo_nested_filter": lambda m: models.Filter(
        must=[fc("rating", range=models.Range(gte=1.005)),
              models.Filter(should=[mv("city", "Oslo"), mv("meta.color", "red")])],
        should=[fc("price", range=models.Range(lt=300)), mv("tags", "local")],
        must_not=[fc("tags", match=models.MatchAny(any=["bulk"]))]),
    "selective": lambda m: models.Filter(must=[
        mv("city", "Oslo"), mv("meta.color", "red"), fc("price", range=models.Range(lt=200))]),  # ~1%
    "empty_result": lambda m: models.Filter(must=[mv("city", "Atlantis-does-not-exist")]),
}


# ====================================================================== assertions
def close(a, b, tol=SCORE_TOL):
    return abs(a - b) <= tol * max(1.0, abs(b))


def assert_exact(points, model, using, q, mask, k=10, offset=0):
    """points == brute-force top-k over mask (ids in order, scores within tolerance).

    Where ids differ at a rank the brute-force scores must tie within tolerance."""
    scores = model.scores(using, q)
    exp = topk(scores, mask, k, HIGHER_IS_BETTER[using], offset)
    got = [p.id for p in points]
    detail = (f"\n got ids {got}\n got scores {[round(p.score, 6) for p in points]}"
              f"\n exp ids {[model.ids[r] for r in exp]}\n exp scores {[round(float(scores[r]), 6) for r in exp]}")
    assert len(got) == len(exp), f"{len(got)} results, expected {len(exp)}" + detail
    assert len(set(got)) == len(got), "duplicate ids" + detail
    for i, p in enumerate(points):
        assert p.id in model.row, f"unknown id {p.id}" + detail
        r = model.row[p.id]
        assert mask[r], f"id {p.id} does not satisfy the filter (or is deleted)" + detail
        assert close(p.score, float(scores[r])), f"score of id {p.id}: {p.score} vs {scores[r]}" + detail
        if p.id != model.ids[exp[i]]:
            assert close(float(scores[r]), float(scores[exp[i]])), f"rank {i} differs" + detail


def recall_of(points, model, using, q, mask, k=10):
    """Recall@k of approximate results; also checks filter, order and scores of what came back."""
    scores = model.scores(using, q)
    exp = {model.ids[r] for r in topk(scores, mask, k, HIGHER_IS_BETTER[using])}
    got = [p.id for p in points]
    assert len(got) == len(set(got)), f"duplicate ids {got}"
    assert len(got) == min(k, int(mask.sum())), f"{len(got)} results, {int(mask.sum())} points match"
    for p in points:
        r = model.row[p.id]
        assert mask[r], f"id {p.id} does not satisfy the filter (or is deleted)"
        assert close(p.score, float(scores[r])), f"score of id {p.id}: {p.score} vs {scores[r]}"
    s = [p.score for p in points]
    ordered = all((a >= b - SCORE_TOL) if HIGHER_IS_BETTER[using] else (a <= b + SCORE_TOL) for a, b in zip(s, s[1:]))
    assert ordered, f"results not ordered by score: {s}"
    return len(exp & set(got)) / len(exp) if exp else 1.0


def assert_status(exc_info, *codes):
    e = exc_info.value
    assert e.status_code in codes, f"status {e.status_code}, expected {codes}: {e.content[:500]!r}"
    return e


def assert_qdrant_error_body(e):
    """Qdrant's error body: {"status": {"error": "..."}, "time": ...}."""
    body = json.loads(e.content)
    assert isinstance(body.get("status"), dict) and isinstance(body["status"].get("error"), str), body
    assert body["status"]["error"], body


def wait_until_indexed(client, name, timeout=INDEX_TIMEOUT_S):
    """Poll until the collection is green (its HNSW index caught up), as Qdrant users do."""
    deadline = time.monotonic() + timeout
    while True:
        info = client.get_collection(name)
        if info.status == models.CollectionStatus.GREEN:
            return info
        assert time.monotonic() < deadline, (
            f"{name} not green after {timeout}s: {info.status}, indexed {info.indexed_vectors_count}")
        time.sleep(0.5)


def exact_params():
    return models.SearchParams(exact=True)


# ====================================================================== fixtures
@pytest.fixture
def client(vf_server):
    c = vf_server.client()
    yield c
    c.close()


@pytest.fixture(scope="module")
def model(vf_server):
    """vf_named created, 10,000 points upserted (PointStruct and Batch forms), indexes made."""
    m = Model()
    c = vf_server.client()
    # A low full_scan_threshold: filters and collections this small would otherwise be
    # scored exhaustively, and the approximate (HNSW) path would go untested.
    c.create_collection(NAMED, vectors_config={
        "text": models.VectorParams(size=TEXT_DIM, distance=models.Distance.COSINE),
        "image": models.VectorParams(size=IMAGE_DIM, distance=models.Distance.EUCLID),
    }, hnsw_config=models.HnswConfigDiff(full_scan_threshold=FULL_SCAN_THRESHOLD))
    for b, start in enumerate(range(0, N, UPSERT_BATCH)):
        rows = m.upload_order[start: start + UPSERT_BATCH]
        if b % 2 == 0:
            points = [m.point_struct(r) for r in rows]
        else:
            points = models.Batch(
                ids=[m.ids[r] for r in rows],
                vectors={"text": [m.text[r].tolist() for r in rows], "image": [m.image[r].tolist() for r in rows]},
                payloads=[m.payloads[r] for r in rows])
        res = c.upsert(NAMED, points=points, wait=True)
        assert res.status == models.UpdateStatus.COMPLETED, res
    for field, schema in INDEXES.items():
        res = c.create_payload_index(NAMED, field_name=field, field_schema=schema, wait=True)
        assert res.status == models.UpdateStatus.COMPLETED, res
    c.close()
    return m


@pytest.fixture(scope="module")
def plain(vf_server):
    """vf_plain: 300 points, unnamed Dot vectors of dim 8, ids 1..300, one Batch upsert."""
    rng = np.random.default_rng(SEED + 7)
    vecs = rng.standard_normal((PLAIN_N, PLAIN_DIM)).astype(np.float32)
    ids = list(range(1, PLAIN_N + 1))
    c = vf_server.client()
    c.create_collection(PLAIN, vectors_config=models.VectorParams(size=PLAIN_DIM, distance=models.Distance.DOT))
    c.upsert(PLAIN, points=models.Batch(ids=ids, vectors=vecs.tolist(),
                                        payloads=[{"n": i, "even": i % 2 == 0} for i in ids]), wait=True)
    c.close()
    return {"ids": ids, "vecs": vecs}


# ====================================================================== server and collections
def test_server_info_is_compatible_with_client(client):
    info = client.info()
    assert info.title and info.version
    assert is_compatible(dist_version("qdrant-client"), info.version), \
        f"server version {info.version} is incompatible with qdrant-client {dist_version('qdrant-client')}"


def test_collections_exist_list_and_config(client, model, plain):
    assert client.collection_exists(NAMED) is True
    assert client.collection_exists(PLAIN) is True
    assert client.collection_exists("vf_does_not_exist") is False
    names = {c.name for c in client.get_collections().collections}
    assert {NAMED, PLAIN} <= names, names

    info = client.get_collection(NAMED)
    vectors = info.config.params.vectors
    assert isinstance(vectors, dict), vectors
    assert set(vectors) == {"text", "image"}
    assert (vectors["text"].size, vectors["text"].distance) == (TEXT_DIM, models.Distance.COSINE)
    assert (vectors["image"].size, vectors["image"].distance) == (IMAGE_DIM, models.Distance.EUCLID)
    assert info.points_count == int(model.alive.sum())
    assert info.config.hnsw_config.full_scan_threshold == FULL_SCAN_THRESHOLD

    info = client.get_collection(PLAIN)
    vectors = info.config.params.vectors
    assert isinstance(vectors, models.VectorParams), vectors
    assert (vectors.size, vectors.distance) == (PLAIN_DIM, models.Distance.DOT)
    assert info.points_count == PLAIN_N


def test_payload_indexes_in_payload_schema(client, model):
    schema = client.get_collection(NAMED).payload_schema
    for field, kind in INDEXES.items():
        assert field in schema, f"{field} missing from payload_schema {schema}"
        assert schema[field].data_type == kind, (field, schema[field])
    assert schema["city"].points > 0, schema["city"]


# ====================================================================== search
@pytest.mark.parametrize("using", ["text", "image"])
@pytest.mark.parametrize("filter_name", list(FILTERS))
def test_exact_search_matches_brute_force(client, model, using, filter_name):
    flt = FILTERS[filter_name](model)
    mask = model.mask(flt)
    for _ in range(2):
        q = model.query(using)
        res = client.query_points(NAMED, query=q.tolist(), using=using, query_filter=flt,
                                  search_params=exact_params(), limit=10, with_payload=False)
        assert_exact(res.points, model, using, q, mask)


@pytest.mark.parametrize("using", ["text", "image"])
@pytest.mark.parametrize("filter_name", ["none", "city_eq", "combo_nested_filter", "selective"])
def test_approximate_search_recall(client, model, using, filter_name):
    # Until the background index build finishes the server scores exhaustively (like
    # Qdrant's unindexed segments); recall is about the graph, so wait for it.
    wait_until_indexed(client, NAMED)
    flt = FILTERS[filter_name](model)
    mask = model.mask(flt)
    recalls = []
    for _ in range(RECALL_QUERIES):
        q = model.query(using)
        res = client.query_points(NAMED, query=q.tolist(), using=using, query_filter=flt, limit=10,
                                  with_payload=False)
        recalls.append(recall_of(res.points, model, using, q, mask))
    assert np.mean(recalls) >= RECALL_MIN, f"recall@10 {np.mean(recalls):.3f} < {RECALL_MIN}: {recalls}"


@pytest.mark.parametrize("using", ["text", "image"])
def test_score_threshold(client, model, using):
    q = model.query(using)
    scores = model.scores(using, q)
    ranked = topk(scores, model.alive, 20, HIGHER_IS_BETTER[using])
    # Between the 5th and 6th best: 5 results; Euclid thresholds are upper bounds on distance.
    threshold = float((scores[ranked[4]] + scores[ranked[5]]) / 2)
    res = client.query_points(NAMED, query=q.tolist(), using=using, search_params=exact_params(), limit=10,
                              score_threshold=threshold, with_payload=False)
    assert_exact(res.points, model, using, q, model.alive, k=5)
    res = client.query_points(NAMED, query=q.tolist(), using=using, limit=10,
                              score_threshold=threshold, with_payload=False)
    for p in res.points:
        assert (p.score >= threshold) if HIGHER_IS_BETTER[using] else (p.score <= threshold), (p, threshold)


@pytest.mark.parametrize("using", ["text", "image"])
def test_offset_pages_through_ranking(client, model, using):
    q = model.query(using)
    flt = FILTERS["city_eq"](model)
    mask = model.mask(flt)
    for offset in (0, 3, 10):
        res = client.query_points(NAMED, query=q.tolist(), using=using, query_filter=flt,
                                  search_params=exact_params(), limit=5, offset=offset, with_payload=False)
        assert_exact(res.points, model, using, q, mask, k=5, offset=offset)


def test_with_payload_selectors(client, model):
    q = model.query("text").tolist()
    res = client.query_points(NAMED, query=q, using="text", limit=5, with_payload=True)
    for p in res.points:
        assert p.payload == model.payloads[model.row[p.id]]
        assert p.vector is None
    res = client.query_points(NAMED, query=q, using="text", limit=5, with_payload=["city"])
    for p in res.points:
        assert p.payload == {"city": model.payloads[model.row[p.id]]["city"]}, p.payload
    res = client.query_points(NAMED, query=q, using="text", limit=5, with_payload=False)
    for p in res.points:
        assert not p.payload, p.payload
    res = client.query_points(NAMED, query=q, using="text", limit=5,
                              with_payload=models.PayloadSelectorExclude(exclude=["tags", "meta"]))
    for p in res.points:
        exp = {k: v for k, v in model.payloads[model.row[p.id]].items() if k not in ("tags", "meta")}
        assert p.payload == exp, p.payload


def test_with_vectors_selectors(client, model):
    q = model.query("image").tolist()
    res = client.query_points(NAMED, query=q, using="image", limit=5, with_payload=False, with_vectors=["text"])
    assert res.points
    for p in res.points:
        r = model.row[p.id]
        assert isinstance(p.vector, dict) and set(p.vector) == {"text"}, p.vector
        np.testing.assert_allclose(p.vector["text"], model.text_unit[r], atol=VECTOR_TOL)
    res = client.query_points(NAMED, query=q, using="image", limit=5, with_payload=False, with_vectors=True)
    for p in res.points:
        r = model.row[p.id]
        assert set(p.vector) == {"text", "image"}, p.vector
        np.testing.assert_allclose(p.vector["text"], model.text_unit[r], atol=VECTOR_TOL)
        np.testing.assert_allclose(p.vector["image"], model.image[r], atol=1e-6)


def test_query_batch_points(client, model):
    specs = [("text", "city_any_price_range", 10, 0), ("image", "none", 7, 0),
             ("text", "nested_meta", 5, 2), ("image", "is_null_opt", 10, 0)]
    queries = [model.query(using) for using, *_ in specs]
    requests = [models.QueryRequest(query=q.tolist(), using=using, filter=FILTERS[fname](model), limit=k,
                                    offset=off, params=exact_params(), with_payload=["city"])
                for q, (using, fname, k, off) in zip(queries, specs)]
    responses = client.query_batch_points(NAMED, requests=requests)
    assert len(responses) == len(specs)
    for resp, q, (using, fname, k, off) in zip(responses, queries, specs):
        assert_exact(resp.points, model, using, q, model.mask(FILTERS[fname](model)), k=k, offset=off)
        for p in resp.points:
            assert p.payload == {"city": model.payloads[model.row[p.id]]["city"]}


def test_legacy_search_api(client, model):
    if not hasattr(client, "search") or not hasattr(client, "search_batch"):
        pytest.skip("qdrant-client 1.19.1 has no search/search_batch (removed); query_points covers search")
    q = model.query("text")
    hits = client.search(NAMED, query_vector=("text", q.tolist()), limit=10, search_params=exact_params())
    assert_exact(hits, model, "text", q, model.alive)


def test_query_without_vector_returns_points_in_id_order(client, model):
    flt = FILTERS["city_eq"](model)
    mask = model.mask(flt)
    exp = sorted(model.ids[r] for r in np.nonzero(mask)[0])[:7]
    res = client.query_points(NAMED, query_filter=flt, limit=7, with_payload=False)
    assert [p.id for p in res.points] == exp


def test_plain_dot_collection(client, plain):
    ids, vecs = plain["ids"], plain["vecs"]
    rng = np.random.default_rng(SEED + 8)
    for _ in range(5):
        q = rng.standard_normal(PLAIN_DIM).astype(np.float32)
        scores = vecs.astype(np.float64) @ q.astype(np.float64)
        res = client.query_points(PLAIN, query=q.tolist(), search_params=exact_params(), limit=10)
        exp = [ids[r] for r in np.argsort(-scores, kind="stable")[:10]]
        assert [p.id for p in res.points] == exp
        for p in res.points:
            assert close(p.score, float(scores[p.id - 1]))
            assert p.payload == {"n": p.id, "even": p.id % 2 == 0}
        # unnamed vectors: a filter on a bool field, and the vector comes back as a plain list
        res = client.query_points(PLAIN, query=q.tolist(), search_params=exact_params(), limit=3, with_vectors=True,
                                  query_filter=models.Filter(must=[mv("even", True)]))
        exp = [ids[r] for r in np.argsort(-scores, kind="stable") if ids[r] % 2 == 0][:3]
        assert [p.id for p in res.points] == exp
        for p in res.points:
            assert isinstance(p.vector, list)
            np.testing.assert_allclose(p.vector, vecs[p.id - 1], atol=1e-6)  # Dot: stored as given
    assert client.count(PLAIN, exact=True).count == PLAIN_N


# ====================================================================== scroll, count, retrieve
def test_scroll_everything_in_ascending_id_order(client, model):
    seen, payloads, offset, pages = [], {}, None, 0
    while True:
        records, offset = client.scroll(NAMED, limit=1000, offset=offset, with_payload=True, with_vectors=False)
        pages += 1
        assert len(records) <= 1000
        if offset is not None:
            assert len(records) == 1000, f"short page ({len(records)}) with next_page_offset={offset}"
        for rec in records:
            seen.append(rec.id)
            payloads[rec.id] = rec.payload
            assert rec.vector is None
        if offset is None:
            break
        assert pages <= N // 1000 + 2, "scroll does not end"
    assert seen == sorted(seen), "scroll is not in ascending id order"
    assert len(seen) == len(set(seen)), "an id was returned twice"
    assert seen == model.alive_ids()
    bad = [pid for pid in seen if payloads[pid] != model.payloads[model.row[pid]]]
    assert not bad, f"{len(bad)} payloads differ, e.g. {bad[0]}: {payloads[bad[0]]} vs {model.payloads[model.row[bad[0]]]}"


def test_scroll_resumes_from_any_offset(client, model):
    alive = model.alive_ids()
    start = alive[1234]
    records, nxt = client.scroll(NAMED, limit=10, offset=start, with_payload=False)
    assert [r.id for r in records] == alive[1234:1244]
    assert nxt == alive[1244]
    # an offset that is not an existing id starts at the next id above it
    records, _ = client.scroll(NAMED, limit=3, offset=alive[10] + 1, with_payload=False)
    assert [r.id for r in records] == alive[11:14]


@pytest.mark.parametrize("filter_name", ["city_eq", "tags_should", "nested_meta", "is_empty_opt",
                                         "has_id_should_city", "combo_nested_filter", "selective", "empty_result"])
def test_scroll_with_filter(client, model, filter_name):
    flt = FILTERS[filter_name](model)
    exp = sorted(model.ids[r] for r in np.nonzero(model.mask(flt))[0])
    seen, offset = [], None
    while True:
        records, offset = client.scroll(NAMED, scroll_filter=flt, limit=250, offset=offset, with_payload=False)
        seen.extend(r.id for r in records)
        if offset is None:
            break
    assert seen == exp, f"{len(seen)} ids, expected {len(exp)}"


@pytest.mark.parametrize("filter_name", list(FILTERS))
def test_count_matches_brute_force(client, model, filter_name):
    flt = FILTERS[filter_name](model)
    assert client.count(NAMED, count_filter=flt, exact=True).count == int(model.mask(flt).sum())


def test_retrieve_returns_upserted_vectors_and_payloads(client, model):
    rows = [model.upload_order[i] for i in (0, 1, 999, 1000, 1001, 5555, 9999)]  # both upsert forms
    ids = [model.ids[r] for r in rows] + [10**13 + 5]  # the last does not exist: silently absent
    recs = client.retrieve(NAMED, ids=ids, with_payload=True, with_vectors=True)
    got = {r.id: r for r in recs}
    assert set(got) == {model.ids[r] for r in rows if model.alive[r]}
    for r in (r for r in rows if model.alive[r]):
        rec = got[model.ids[r]]
        assert rec.payload == model.payloads[r]
        np.testing.assert_allclose(rec.vector["text"], model.text_unit[r], atol=VECTOR_TOL)  # Cosine: normalised
        np.testing.assert_allclose(rec.vector["image"], model.image[r], atol=1e-6)  # Euclid: as given
    recs = client.retrieve(NAMED, ids=ids[:2], with_payload=False, with_vectors=["image"])
    for rec in recs:
        assert not rec.payload
        assert set(rec.vector) == {"image"}


# ====================================================================== updates
def test_set_overwrite_delete_clear_payload(client, model):
    ids = model.reserved[0:20]
    rows = [model.row[i] for i in ids]

    # set_payload merges keys (a new keyword value must reach the city index)
    client.set_payload(NAMED, payload={"city": "Atlantis", "extra": {"k": 1}}, points=ids[0:5], wait=True)
    for r in rows[0:5]:
        model.payloads[r].update({"city": "Atlantis", "extra": {"k": 1}})
    # overwrite_payload replaces the whole payload
    client.overwrite_payload(NAMED, payload={"city": "Lima", "price": 1}, points=ids[5:10], wait=True)
    for r in rows[5:10]:
        model.payloads[r] = {"city": "Lima", "price": 1}
    # delete_payload removes the keys named
    client.delete_payload(NAMED, keys=["price", "tags", "opt"], points=ids[10:15], wait=True)
    for r in rows[10:15]:
        for k in ("price", "tags", "opt"):
            model.payloads[r].pop(k, None)
    # clear_payload leaves an empty payload
    client.clear_payload(NAMED, points_selector=models.PointIdsList(points=ids[15:20]), wait=True)
    for r in rows[15:20]:
        model.payloads[r] = {}
    # set_payload on the points a filter selects
    atlantis = models.Filter(must=[mv("city", "Atlantis")])
    client.set_payload(NAMED, payload={"flag": True}, points=atlantis, wait=True)
    for r in rows[0:5]:
        model.payloads[r]["flag"] = True

    got = {rec.id: rec.payload for rec in client.retrieve(NAMED, ids=ids, with_payload=True)}
    for pid, r in zip(ids, rows):
        assert got[pid] == model.payloads[r], (pid, got[pid], model.payloads[r])

    # indexes and filters see the new payloads
    for flt in [atlantis, models.Filter(must=[mv("flag", True)]), models.Filter(must=[mv("city", "Lima")]),
                models.Filter(must=[fc("price", range=models.Range(lte=1))]),
                models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key="tags"))]),
                models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key="city"))]),
                FILTERS["is_empty_opt"](model), FILTERS["tags_should"](model), FILTERS["nested_meta"](model)]:
        assert client.count(NAMED, count_filter=flt, exact=True).count == int(model.mask(flt).sum()), flt
    q = model.query("text")
    res = client.query_points(NAMED, query=q.tolist(), using="text", query_filter=atlantis, limit=10,
                              with_payload=True)
    assert sorted(p.id for p in res.points) == sorted(ids[0:5])
    assert_exact(client.query_points(NAMED, query=q.tolist(), using="text", query_filter=atlantis, limit=10,
                                     search_params=exact_params()).points, model, "text", q, model.mask(atlantis))


def test_set_payload_at_nested_key(client, model):
    """set_payload(key="meta") merges into the object at that key (Qdrant >= 1.8)."""
    ids = model.reserved[20:25]
    client.set_payload(NAMED, payload={"color": "teal"}, points=ids, key="meta", wait=True)
    for pid in ids:
        model.payloads[model.row[pid]]["meta"]["color"] = "teal"
    got = {rec.id: rec.payload for rec in client.retrieve(NAMED, ids=ids, with_payload=True)}
    for pid in ids:
        assert got[pid] == model.payloads[model.row[pid]], (pid, got[pid])
    for flt in [models.Filter(must=[mv("meta.color", "teal")]), FILTERS["nested_meta"](model)]:
        assert client.count(NAMED, count_filter=flt, exact=True).count == int(model.mask(flt).sum()), flt


def test_delete_payload_nested_key(client, model):
    """delete_payload(keys=["meta.size"]) removes just that key of the nested object."""
    ids = model.reserved[25:30]
    client.delete_payload(NAMED, keys=["meta.size"], points=ids, wait=True)
    for pid in ids:
        del model.payloads[model.row[pid]]["meta"]["size"]
    got = {rec.id: rec.payload for rec in client.retrieve(NAMED, ids=ids, with_payload=True)}
    for pid in ids:
        assert got[pid] == model.payloads[model.row[pid]], (pid, got[pid])
    for flt in [models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key="meta.size"))]),
                FILTERS["nested_meta"](model), FILTERS["nested_size_match"](model)]:
        assert client.count(NAMED, count_filter=flt, exact=True).count == int(model.mask(flt).sum()), flt


def test_upsert_replaces_existing_points(client, model):
    ids = model.reserved[30:40]
    rows = [model.row[i] for i in ids]
    rng = np.random.default_rng(SEED + 3)
    for r in rows:
        model.text[r] = rng.standard_normal(TEXT_DIM).astype(np.float32)
        model.image[r] = rng.standard_normal(IMAGE_DIM).astype(np.float32)
        model.payloads[r] = {"city": "Oslo", "price": 5, "rating": 1.0, "replaced": True}
    model.refresh()
    client.upsert(NAMED, points=[model.point_struct(r) for r in rows], wait=True)
    assert client.count(NAMED, exact=True).count == int(model.alive.sum())
    got = {rec.id: rec for rec in client.retrieve(NAMED, ids=ids, with_payload=True, with_vectors=True)}
    for pid, r in zip(ids, rows):
        assert got[pid].payload == model.payloads[r]  # replaced, not merged
        np.testing.assert_allclose(got[pid].vector["text"], model.text_unit[r], atol=VECTOR_TOL)
        np.testing.assert_allclose(got[pid].vector["image"], model.image[r], atol=1e-6)
    # the new vectors are what search sees (approximate and exact)
    for using, vec in (("text", model.text[rows[0]]), ("image", model.image[rows[0]])):
        res = client.query_points(NAMED, query=vec.tolist(), using=using, limit=10, with_payload=False)
        assert res.points[0].id == ids[0], res.points[:3]
        assert_exact(client.query_points(NAMED, query=vec.tolist(), using=using, limit=10,
                                         search_params=exact_params()).points, model, using, vec, model.alive)
    flt = models.Filter(must=[mv("replaced", True)])
    assert client.count(NAMED, count_filter=flt, exact=True).count == int(model.mask(flt).sum()) == len(ids)


def test_delete_points_by_ids_and_by_filter(client, model):
    before = int(model.alive.sum())
    ids = model.reserved[40:90]
    res = client.delete(NAMED, points_selector=models.PointIdsList(points=ids), wait=True)
    assert res.status == models.UpdateStatus.COMPLETED
    for pid in ids:
        model.alive[model.row[pid]] = False
    assert client.count(NAMED, exact=True).count == before - len(ids)
    assert client.retrieve(NAMED, ids=ids) == []
    # deleting ids that are already gone is not an error
    client.delete(NAMED, points_selector=ids[:3], wait=True)

    flt = models.Filter(must=[mv("city", "Lima"), fc("price", range=models.Range(lt=50))])
    doomed = model.mask(flt)
    assert doomed.sum() > 20
    client.delete(NAMED, points_selector=models.FilterSelector(filter=flt), wait=True)
    model.alive &= ~doomed
    assert client.count(NAMED, count_filter=flt, exact=True).count == 0
    assert client.count(NAMED, exact=True).count == int(model.alive.sum())
    gone = [model.ids[r] for r in np.nonzero(doomed)[0]]
    assert client.retrieve(NAMED, ids=gone[:50]) == []
    assert client.get_collection(NAMED).points_count == int(model.alive.sum())

    # deleted points never come back from search
    for using in ("text", "image"):
        vec = (model.text if using == "text" else model.image)[model.row[ids[0]]]
        assert_exact(client.query_points(NAMED, query=vec.tolist(), using=using, limit=10,
                                         search_params=exact_params()).points, model, using, vec, model.alive)
        res = client.query_points(NAMED, query=vec.tolist(), using=using, limit=10)
        assert all(model.alive[model.row[p.id]] for p in res.points)
    res = client.query_points(NAMED, query=model.query("text").tolist(), using="text", limit=10,
                              query_filter=models.Filter(must=[models.HasIdCondition(has_id=ids + gone)]))
    assert res.points == []


def test_datetime_range_filter(client, model):
    flt = models.Filter(must=[fc("created", range=models.DatetimeRange(
        gte=dt.datetime(2024, 4, 1, tzinfo=dt.timezone.utc), lt=dt.datetime(2024, 7, 1, tzinfo=dt.timezone.utc)))])
    mask = model.mask(flt)
    assert 1000 < mask.sum() < 5000
    assert client.count(NAMED, count_filter=flt, exact=True).count == int(mask.sum())
    client.create_payload_index(NAMED, field_name="created", field_schema=models.PayloadSchemaType.DATETIME, wait=True)
    assert client.get_collection(NAMED).payload_schema["created"].data_type == models.PayloadSchemaType.DATETIME
    assert client.count(NAMED, count_filter=flt, exact=True).count == int(mask.sum())
    q = model.query("image")
    assert_exact(client.query_points(NAMED, query=q.tolist(), using="image", query_filter=flt, limit=10,
                                     search_params=exact_params()).points, model, "image", q, mask)


# ====================================================================== errors
def test_wrong_dimension_upsert_is_rejected_and_applies_nothing(client, model):
    before = client.count(NAMED, exact=True).count
    good, bad = 10**13 + 1, 10**13 + 2
    points = [
        models.PointStruct(id=good, vector={"text": [0.1] * TEXT_DIM, "image": [0.1] * IMAGE_DIM}, payload={"a": 1}),
        models.PointStruct(id=bad, vector={"text": [0.1] * (TEXT_DIM - 1), "image": [0.1] * IMAGE_DIM}),
    ]
    with pytest.raises(UnexpectedResponse) as ei:
        client.upsert(NAMED, points=points, wait=True)
    assert_qdrant_error_body(assert_status(ei, 400, 422))
    assert client.count(NAMED, exact=True).count == before
    assert client.retrieve(NAMED, ids=[good, bad]) == []


def test_bad_queries_are_rejected(client, model):
    with pytest.raises(UnexpectedResponse) as ei:  # wrong query dimension
        client.query_points(NAMED, query=[0.1] * (TEXT_DIM + 1), using="text")
    assert_qdrant_error_body(assert_status(ei, 400, 422))
    with pytest.raises(UnexpectedResponse) as ei:  # vector name the collection does not have
        client.query_points(NAMED, query=[0.1] * TEXT_DIM, using="nope")
    assert_qdrant_error_body(assert_status(ei, 400, 422))
    with pytest.raises(UnexpectedResponse) as ei:  # unknown vector name on upsert
        client.upsert(NAMED, points=[models.PointStruct(id=10**13 + 3, vector={"nope": [0.1] * TEXT_DIM})])
    assert_qdrant_error_body(assert_status(ei, 400, 422))
    assert client.retrieve(NAMED, ids=[10**13 + 3]) == []


def test_unknown_collection_is_404(client):
    calls = {
        "get_collection": lambda: client.get_collection("vf_missing"),
        "query_points": lambda: client.query_points("vf_missing", query=[0.1] * 4),
        "upsert": lambda: client.upsert("vf_missing", points=[models.PointStruct(id=1, vector=[0.1] * 4)]),
        "count": lambda: client.count("vf_missing"),
        "scroll": lambda: client.scroll("vf_missing"),
        "retrieve": lambda: client.retrieve("vf_missing", ids=[1]),
        "create_payload_index": lambda: client.create_payload_index(
            "vf_missing", field_name="x", field_schema=models.PayloadSchemaType.KEYWORD),
    }
    for name, call in calls.items():
        with pytest.raises(UnexpectedResponse) as ei:
            call()
        e = ei.value
        assert e.status_code == 404, f"{name}: status {e.status_code}: {e.content[:300]!r}"
        assert_qdrant_error_body(e)


def test_creating_an_existing_collection_is_409(client, model):
    with pytest.raises(UnexpectedResponse) as ei:
        client.create_collection(NAMED, vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT))
    assert_qdrant_error_body(assert_status(ei, 409))
    # and the existing collection is untouched
    assert set(client.get_collection(NAMED).config.params.vectors) == {"text", "image"}


# ====================================================================== restart
def test_state_survives_restart(vf_server, model, plain):
    checks = [("text", "none"), ("image", "city_any_price_range"), ("text", "nested_meta"),
              ("image", "is_null_opt"), ("text", "selective")]
    queries = [(using, fname, model.query(using)) for using, fname in checks]

    def snapshot():
        c = vf_server.client()
        try:
            info = c.get_collection(NAMED)
            return {
                "collections": sorted(x.name for x in c.get_collections().collections),
                "count": c.count(NAMED, exact=True).count,
                "points_count": info.points_count,
                "plain_count": c.count(PLAIN, exact=True).count,
                "vectors": {k: (v.size, v.distance) for k, v in info.config.params.vectors.items()},
                "schema": {k: v.data_type for k, v in info.payload_schema.items()},
                "exact": [[p.id for p in c.query_points(
                    NAMED, query=q.tolist(), using=using, query_filter=FILTERS[f](model), limit=10,
                    search_params=exact_params(), with_payload=False).points] for using, f, q in queries],
                "payloads": {r.id: r.payload for r in c.retrieve(NAMED, ids=model.reserved[0:40])},
            }
        finally:
            c.close()

    before = snapshot()
    vf_server.restart()
    after = snapshot()
    for key in before:
        assert after[key] == before[key], f"{key} changed across restart:\n before {before[key]}\n after  {after[key]}"

    c = vf_server.client()
    try:
        assert after["count"] == int(model.alive.sum())
        assert set(after["schema"]) >= set(INDEXES)
        for r in (model.row[i] for i in model.reserved[0:40]):
            assert after["payloads"].get(model.ids[r]) == (model.payloads[r] if model.alive[r] else None)
        for using, f, q in queries:
            assert_exact(c.query_points(NAMED, query=q.tolist(), using=using, query_filter=FILTERS[f](model),
                                        limit=10, search_params=exact_params(), with_payload=False).points,
                         model, using, q, model.mask(FILTERS[f](model)))
        wait_until_indexed(c, NAMED)
        recalls = []
        for _ in range(RECALL_QUERIES):
            q = model.query("text")
            res = c.query_points(NAMED, query=q.tolist(), using="text", limit=10, with_payload=False)
            recalls.append(recall_of(res.points, model, "text", q, model.alive))
        assert np.mean(recalls) >= RECALL_MIN, recalls
        # and it still takes writes after the restart
        pid = next(i for i in model.reserved[90:] if model.alive[model.row[i]])
        c.set_payload(NAMED, payload={"after_restart": 1}, points=[pid], wait=True)
        model.payloads[model.row[pid]]["after_restart"] = 1
        assert c.retrieve(NAMED, ids=[pid])[0].payload == model.payloads[model.row[pid]]
    finally:
        c.close()


def test_acknowledged_writes_survive_sigkill(vf_server, plain):
    """With the default --wal-sync=always a write is durable once acknowledged (wait=True)."""
    c = vf_server.client()
    try:
        c.upsert(PLAIN, points=[models.PointStruct(id=10**6 + i, vector=[float(i)] * PLAIN_DIM, payload={"k": i})
                                for i in range(3)], wait=True)
        c.set_payload(PLAIN, payload={"touched": True}, points=[1, 2], wait=True)
        c.delete(PLAIN, points_selector=[10**6], wait=True)
    finally:
        c.close()
    vf_server.kill()  # SIGKILL: no drain, no flush
    vf_server.start()
    c = vf_server.client()
    try:
        got = {r.id: r.payload for r in c.retrieve(PLAIN, ids=[1, 2, 10**6, 10**6 + 1, 10**6 + 2])}
        assert got == {1: {"n": 1, "even": False, "touched": True}, 2: {"n": 2, "even": True, "touched": True},
                       10**6 + 1: {"k": 1}, 10**6 + 2: {"k": 2}}
        c.delete(PLAIN, points_selector=[10**6 + 1, 10**6 + 2], wait=True)
        c.overwrite_payload(PLAIN, payload={"n": 1, "even": False}, points=[1], wait=True)
        c.overwrite_payload(PLAIN, payload={"n": 2, "even": True}, points=[2], wait=True)
        assert c.count(PLAIN, exact=True).count == PLAIN_N
    finally:
        c.close()


# ====================================================================== ids, deletion, auth
def test_uuid_point_ids(client, plain):
    rng = np.random.default_rng(SEED + 9)
    uuids = [str(uuid.UUID(bytes=rng.bytes(16))) for _ in range(5)]
    vecs = np.random.default_rng(SEED + 10).standard_normal((5, PLAIN_DIM)).astype(np.float32)
    client.upsert(PLAIN, points=[models.PointStruct(id=u, vector=v.tolist(), payload={"u": u})
                                 for u, v in zip(uuids, vecs)], wait=True)
    got = {r.id: r.payload for r in client.retrieve(PLAIN, ids=uuids)}
    assert got == {u: {"u": u} for u in uuids}
    res = client.query_points(PLAIN, query=vecs[0].tolist(), limit=1, search_params=exact_params(),
                              query_filter=models.Filter(must=[models.HasIdCondition(has_id=uuids)]))
    assert res.points[0].id == uuids[0]
    # scroll: integer ids first (ascending), then UUIDs (ascending by value)
    records, _ = client.scroll(PLAIN, limit=PLAIN_N + 10, with_payload=False)
    assert [r.id for r in records] == plain["ids"] + sorted(uuids, key=lambda u: uuid.UUID(u).int)
    client.delete(PLAIN, points_selector=uuids, wait=True)
    assert client.count(PLAIN, exact=True).count == PLAIN_N


def test_upload_points_helper(client):
    """The client's bulk helper (batches of upserts) into a fresh collection."""
    name = "vf_upload"
    rng = np.random.default_rng(SEED + 11)
    vecs = rng.standard_normal((2000, PLAIN_DIM)).astype(np.float32)
    client.create_collection(name, vectors_config=models.VectorParams(size=PLAIN_DIM, distance=models.Distance.EUCLID))
    try:
        client.upload_points(name, points=(models.PointStruct(id=i, vector=vecs[i].tolist(), payload={"i": i})
                                           for i in range(len(vecs))), batch_size=256, wait=True)
        assert client.count(name, exact=True).count == len(vecs)
        q = rng.standard_normal(PLAIN_DIM)
        d = np.sqrt(((vecs.astype(np.float64) - q) ** 2).sum(axis=1))
        res = client.query_points(name, query=q.tolist(), limit=10, search_params=exact_params())
        assert [p.id for p in res.points] == [int(i) for i in np.argsort(d, kind="stable")[:10]]
        assert all(p.payload == {"i": p.id} for p in res.points)
    finally:
        client.delete_collection(name)


def test_delete_collection(vf_server, client):
    name = "vf_to_delete"
    client.create_collection(name, vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
    client.upsert(name, points=[models.PointStruct(id=i, vector=[1.0, 0.5, 0.25, float(i)]) for i in range(1, 11)])
    assert client.collection_exists(name)
    assert client.delete_collection(name) is True
    assert client.collection_exists(name) is False
    assert name not in {c.name for c in client.get_collections().collections}
    with pytest.raises(UnexpectedResponse) as ei:
        client.get_collection(name)
    assert_status(ei, 404)
    # the deletion is durable, and the name can be reused with another config
    vf_server.restart()
    c = vf_server.client()
    try:
        assert c.collection_exists(name) is False
        c.create_collection(name, vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
        assert c.count(name, exact=True).count == 0
        assert c.delete_collection(name) is True
        assert c.collection_exists(NAMED) and c.collection_exists(PLAIN)
    finally:
        c.close()


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
def test_api_key_is_required_when_configured(server_factory):
    srv = server_factory("vf-auth", api_key="s3cret-key")
    anonymous = QdrantClient(url=srv.url, prefer_grpc=False, timeout=30, check_compatibility=False)
    wrong = QdrantClient(url=srv.url, prefer_grpc=False, timeout=30, api_key="wrong", https=False,
                         check_compatibility=False)
    authed = srv.client()
    try:
        for c in (anonymous, wrong):
            with pytest.raises(UnexpectedResponse) as ei:
                c.get_collections()
            assert ei.value.status_code in (401, 403), ei.value
            with pytest.raises(UnexpectedResponse) as ei:
                c.create_collection("vf_auth", vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
            assert ei.value.status_code in (401, 403), ei.value
        authed.create_collection("vf_auth", vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
        assert [c.name for c in authed.get_collections().collections] == ["vf_auth"]
    finally:
        for c in (anonymous, wrong, authed):
            c.close()
