"""Reference outputs from Python onnxruntime and small request helpers."""

import os
import functools

import numpy as np
import onnxruntime as ort

from conftest import MODELS

OIP_TO_NP = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
    "BYTES": np.object_,
}


@functools.lru_cache(maxsize=None)
def session(path):
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def reference(model_file, feeds, model_dir=MODELS):
    sess = session(os.path.join(model_dir, model_file))
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds)))


def json_input(name, array, datatype):
    data = array.flatten().tolist()
    if datatype == "BYTES":
        data = [x.decode() if isinstance(x, bytes) else str(x) for x in array.flatten()]
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": data}


def sample(datatype, shape, rng):
    t = OIP_TO_NP[datatype]
    if datatype == "BOOL":
        return rng.integers(0, 2, shape).astype(bool)
    if datatype == "BYTES":
        return np.array([f"s{i}-é" for i in range(int(np.prod(shape)))], dtype=object).reshape(shape)
    if datatype.startswith(("FP",)):
        return rng.standard_normal(shape).astype(t)
    info = np.iinfo(t)
    lo, hi = max(info.min, -1000), min(info.max, 1000)
    return rng.integers(lo, hi, shape).astype(t)
