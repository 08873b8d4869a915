"""Generates tinyinfer's test models offline with the `onnx` package.

  mlp.onnx        FP32 MLP 16 -> 64 -> 8, dynamic batch
  all_types.onnx  Identity for every OIP datatype (in_<DT> -> out_<DT>), shape [batch, 3]
  fixed.onnx      y = x + 1 on a fixed [2, 4] FP32 tensor (no batch dimension)
  bert.onnx       BERT-base-sized 2-layer encoder (hidden 768, 12 heads, FFN 3072,
                  opset 20 Gelu), inputs input_ids/attention_mask INT64 [batch, seq],
                  output last_hidden_state FP32 [batch, seq, 768]
  lookup.onnx     row lookup in a 100 x 4 FP32 table: idx INT64 [batch, 1] ->
                  vec FP32 [batch, 1, 4] (Gather); answers every idx in 0..99
  lookup_short.onnx  the same with a 10-row table: fails at run time (ONNX Runtime's
                  Gather bounds check, HTTP 500) for idx >= 10 -- the faulty canary of
                  the rollout scenarios

Usage: python gen_models.py OUT_DIR
"""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 20
IR_VERSION = 10


def save(graph, path, opset=OPSET):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    onnx.save(model, path)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def mlp(path, rng):
    w1 = rng.standard_normal((16, 64)).astype(np.float32) * 0.3
    b1 = rng.standard_normal(64).astype(np.float32) * 0.1
    w2 = rng.standard_normal((64, 8)).astype(np.float32) * 0.3
    b2 = rng.standard_normal(8).astype(np.float32) * 0.1
    nodes = [
        helper.make_node("MatMul", ["input", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["h3"]),
        helper.make_node("Add", ["h3", "b2"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 8])],
        [init("w1", w1), init("b1", b1), init("w2", w2), init("b2", b2)],
    )
    save(graph, path)


ALL_TYPES = {
    "BOOL": TensorProto.BOOL,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}


def all_types(path):
    nodes, inputs, outputs = [], [], []
    for name, ty in ALL_TYPES.items():
        nodes.append(helper.make_node("Identity", [f"in_{name}"], [f"out_{name}"]))
        inputs.append(helper.make_tensor_value_info(f"in_{name}", ty, ["batch", 3]))
        outputs.append(helper.make_tensor_value_info(f"out_{name}", ty, ["batch", 3]))
    save(helper.make_graph(nodes, "all_types", inputs, outputs), path)


def fixed(path):
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [init("one", np.float32(1.0))],
    )
    save(graph, path)


def lookup(path, rows):
    table = np.arange(rows * 4, dtype=np.float32).reshape(rows, 4)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "idx"], ["vec"], axis=0)],
        "lookup",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, ["batch", 1])],
        [helper.make_tensor_value_info("vec", TensorProto.FLOAT, ["batch", 1, 4])],
        [init("table", table)],
    )
    save(graph, path)


def bert(path, rng, layers=2, hidden=768, heads=12, ffn=3072, vocab=8192, max_pos=512):
    head_dim = hidden // heads
    inits, nodes = [], []

    def w(name, *shape):
        inits.append(init(name, (rng.standard_normal(shape) * 0.02).astype(np.float32)))
        return name

    def const(name, value):
        inits.append(init(name, value))
        return name

    def n(op, ins, outs, **attrs):
        nodes.append(helper.make_node(op, ins, outs, **attrs))
        return outs[0]

    def layer_norm(x, prefix):
        g = const(f"{prefix}.g", np.ones(hidden, np.float32))
        b = const(f"{prefix}.b", np.zeros(hidden, np.float32))
        return n("LayerNormalization", [x, g, b], [f"{prefix}.out"], axis=-1, epsilon=1e-12)

    def dense(x, prefix, fan_in, fan_out):
        m = n("MatMul", [x, w(f"{prefix}.w", fan_in, fan_out)], [f"{prefix}.mm"])
        return n("Add", [m, const(f"{prefix}.bias", np.zeros(fan_out, np.float32))], [f"{prefix}.out"])

    # Embeddings: word + position, then LayerNorm.
    words = n("Gather", [w("emb.word", vocab, hidden), "input_ids"], ["emb.words"])
    shape = n("Shape", ["input_ids"], ["ids.shape"])
    seq = n("Gather", [shape, const("idx1", np.array(1, np.int64))], ["seq"], axis=0)
    positions = n("Range", [const("zero", np.array(0, np.int64)), seq, const("one", np.array(1, np.int64))], ["positions"])
    pos = n("Gather", [w("emb.pos", max_pos, hidden), positions], ["emb.positions"])
    x = layer_norm(n("Add", [words, pos], ["emb.sum"]), "emb.ln")

    # Additive attention mask [batch, 1, 1, seq]: 0 where attended, -10000 elsewhere.
    maskf = n("Cast", ["attention_mask"], ["mask.f"], to=TensorProto.FLOAT)
    inv = n("Sub", [const("f1", np.array(1.0, np.float32)), maskf], ["mask.inv"])
    bias = n("Mul", [inv, const("neg", np.array(-10000.0, np.float32))], ["mask.bias"])
    bias = n("Unsqueeze", [bias, const("axes12", np.array([1, 2], np.int64))], ["mask.bias4"])
    split_shape = const("split.shape", np.array([0, 0, heads, head_dim], np.int64))
    merge_shape = const("merge.shape", np.array([0, 0, hidden], np.int64))
    scale = const("scale", np.array(1.0 / np.sqrt(head_dim), np.float32))

    for i in range(layers):
        p = f"l{i}"
        q = n("Transpose", [n("Reshape", [dense(x, f"{p}.q", hidden, hidden), split_shape], [f"{p}.q4"])], [f"{p}.qt"], perm=[0, 2, 1, 3])
        k = n("Transpose", [n("Reshape", [dense(x, f"{p}.k", hidden, hidden), split_shape], [f"{p}.k4"])], [f"{p}.kt"], perm=[0, 2, 3, 1])
        v = n("Transpose", [n("Reshape", [dense(x, f"{p}.v", hidden, hidden), split_shape], [f"{p}.v4"])], [f"{p}.vt"], perm=[0, 2, 1, 3])
        scores = n("Mul", [n("MatMul", [q, k], [f"{p}.qk"]), scale], [f"{p}.scaled"])
        probs = n("Softmax", [n("Add", [scores, bias], [f"{p}.masked"])], [f"{p}.probs"], axis=-1)
        ctx = n("Transpose", [n("MatMul", [probs, v], [f"{p}.ctx4"])], [f"{p}.ctxt"], perm=[0, 2, 1, 3])
        ctx = n("Reshape", [ctx, merge_shape], [f"{p}.ctx"])
        attn = dense(ctx, f"{p}.o", hidden, hidden)
        x = layer_norm(n("Add", [x, attn], [f"{p}.res1"]), f"{p}.ln1")
        h = n("Gelu", [dense(x, f"{p}.ffn1", hidden, ffn)], [f"{p}.gelu"])
        h = dense(h, f"{p}.ffn2", ffn, hidden)
        x = layer_norm(n("Add", [x, h], [f"{p}.res2"]), f"{p}.ln2")
    n("Identity", [x], ["last_hidden_state"])

    graph = helper.make_graph(
        nodes,
        "bert_base_2layer",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", hidden])],
        inits,
    )
    save(graph, path)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(20261126)
    mlp(os.path.join(out, "mlp.onnx"), rng)
    all_types(os.path.join(out, "all_types.onnx"))
    fixed(os.path.join(out, "fixed.onnx"))
    bert(os.path.join(out, "bert.onnx"), rng)
    lookup(os.path.join(out, "lookup.onnx"), 100)
    lookup(os.path.join(out, "lookup_short.onnx"), 10)


if __name__ == "__main__":
    main()
