"""The real all-MiniLM-L6-v2 (int8 ONNX) pipeline: token ids identical to the Python
`tokenizers` library, embeddings within cosine 0.999 of Python onnxruntime with the same
pooling, and paraphrases scoring above unrelated sentences."""

import os

import numpy as np
import requests
import tritonclient.grpc as tgrpc
from tokenizers import Tokenizer

from conftest import MINILM
from helpers import session

SENTENCES = [
    "A man is playing a guitar.",
    "Someone is strumming a guitar on stage.",
    "The stock market fell sharply on Monday.",
    "Shares dropped steeply at the start of the week.",
    "How do I bake sourdough bread at home?",
    "Ünïcödé, emoji 🚀 and punctuation!!! are tokenized too",
]


def reference(sentences):
    tok = Tokenizer.from_file(os.path.join(MINILM, "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    sess = session(os.path.join(MINILM, "model.onnx"))
    ids_list, embs = [], []
    for s in sentences:
        ids = np.array([tok.encode(s).ids], np.int64)
        mask = np.ones_like(ids)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        feeds = {k: v for k, v in feeds.items() if k in {i.name for i in sess.get_inputs()}}
        hidden = sess.run(None, feeds)[0][0]
        e = hidden.mean(axis=0)
        embs.append(e / np.linalg.norm(e))
        ids_list.append(ids[0].tolist())
    return ids_list, np.stack(embs)


def server_embed(server, sentences):
    body = {"inputs": [{"name": "text", "shape": [len(sentences)], "datatype": "BYTES", "data": sentences}]}
    r = requests.post(f"{server.http}/v2/models/minilm/infer", json=body)
    assert r.status_code == 200, r.text
    outs = {o["name"]: o for o in r.json()["outputs"]}
    emb = np.array(outs["embedding"]["data"], np.float32).reshape(outs["embedding"]["shape"])
    ids = np.array(outs["input_ids"]["data"], np.int64).reshape(outs["input_ids"]["shape"])
    return ids, emb


def test_metadata_describes_text_pipeline(server):
    meta = requests.get(f"{server.http}/v2/models/minilm").json()
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"][0] == {"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}


def test_token_ids_and_embeddings_match_reference(server):
    ref_ids, ref_emb = reference(SENTENCES)
    ids, emb = server_embed(server, SENTENCES)
    assert emb.shape == (len(SENTENCES), 384)
    for row, expected in zip(ids, ref_ids):
        assert row[: len(expected)].tolist() == expected
        assert not row[len(expected):].any()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    cos = (emb * ref_emb).sum(axis=1)
    assert cos.min() >= 0.999, cos


def test_paraphrases_score_higher_than_unrelated(server):
    _, emb = server_embed(server, SENTENCES)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] and sim[0, 1] > sim[0, 4]
    assert sim[2, 3] > sim[2, 0] and sim[2, 3] > sim[2, 4]


def test_single_sentences_batch_like_the_whole(server):
    _, whole = server_embed(server, SENTENCES)
    for i, s in enumerate(SENTENCES[:3]):
        _, one = server_embed(server, [s])
        assert float(one[0] @ whole[i]) >= 0.9999


def test_minilm_over_grpc(server):
    client = tgrpc.InferenceServerClient(server.grpc)
    data = np.array([s.encode() for s in SENTENCES[:2]], dtype=object)
    i = tgrpc.InferInput("text", [2], "BYTES")
    i.set_data_from_numpy(data)
    res = client.infer("minilm", [i], outputs=[tgrpc.InferRequestedOutput("embedding")])
    emb = res.as_numpy("embedding")
    _, ref = reference(SENTENCES[:2])
    assert ((emb * ref).sum(axis=1) >= 0.999).all()
