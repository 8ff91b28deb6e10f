"""ONNX on CPU: a traced TensorFlow function frozen and converted with tf2onnx, and run with ONNX
Runtime without TensorFlow's per-call overhead (1.43x TensorFlow for EfficientNet-B0 on 2 cores).

Both stages export the function their TensorFlow path already calls (``forward_fn`` for the
embedder, ``top_box_fn`` for the detector), so the two runtimes compute the same graph: the
difference is float rounding, which ``bench/infer.py`` measures (largest cosine difference of the
embeddings, share of identical top-5 predictions).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

OPSET = 17  # ONNX Runtime >= 1.14 runs it; tf2onnx 1.16-1.17 writes it
EXTRA = "pip install onnxruntime tf2onnx onnx (the project's [onnx] extra)"


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{module} is not installed: {EXTRA}") from e


def digest(path: str) -> str:
    """sha256 of a file: an export names the ``.keras`` file it came from, so that a model trained
    again into the same run folder is not run from a stale export."""
    import hashlib

    from runtime.storage import read_bytes

    return hashlib.sha256(read_bytes(path)).hexdigest()


def export(fn, specs: Sequence, path: str, source: str | None = None) -> None:
    """Write ``fn`` (a ``tf.function``) traced at ``specs`` (``tf.TensorSpec``s, batch ``None``; none
    when ``fn`` has an input signature) to ``path`` as ONNX, its variables frozen into constants;
    outputs keep their order. ``source``: the model file, whose digest the export records."""
    import logging
    import warnings

    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from runtime import atomic

    tf2onnx = _require("tf2onnx")
    from keras.src.export.tf2onnx_lib import patch_tf2onnx

    tf_log = logging.getLogger("tensorflow")
    level = tf_log.level
    with warnings.catch_warnings():  # tf2onnx's np.object probe and TF 1 deprecation notices: not ours
        warnings.simplefilter("ignore")
        tf_log.setLevel(logging.ERROR)
        try:
            patch_tf2onnx()  # tf2onnx 1.17 still reads np.object / np.cast, gone in numpy 2 (Keras's fix)
            frozen = convert_variables_to_constants_v2(fn.get_concrete_function(*specs))
            proto, _ = tf2onnx.convert.from_graph_def(
                frozen.graph.as_graph_def(), input_names=[t.name for t in frozen.inputs],
                output_names=[t.name for t in frozen.outputs], opset=OPSET)
        finally:
            tf_log.setLevel(level)
    if source is not None:
        proto.metadata_props.add(key="source_sha256", value=digest(source))
    atomic.write_bytes(path, proto.SerializeToString())


class Session:
    """An ONNX model as a function of numpy arrays: ``Session(path)(x)`` returns its outputs (a
    tuple when the model has several, else the one array)."""

    def __init__(self, path: str, source: str | None = None, threads: int = 0):
        from runtime.storage import exists, read_bytes

        ort = _require("onnxruntime")
        if not exists(path):
            raise FileNotFoundError(f"{path} not found: export the run first (python pipeline/export.py)")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads  # 0: one per physical core
        # no busy-waiting between ops: tf.data decodes and crops on the same cores meanwhile (on 2
        # cores, spinning made the embedder 1.6x slower inside the pipeline)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(read_bytes(path), opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.path = path
        made_from = self.session.get_modelmeta().custom_metadata_map.get("source_sha256")
        if source is not None and made_from is not None and made_from != digest(source):
            raise ValueError(f"{path} was exported from another {source} than the one there now: export "
                             "again (python pipeline/export.py)")

    def __call__(self, x) -> np.ndarray | tuple[np.ndarray, ...]:
        out = self.session.run(None, {self.input: np.asarray(x, np.float32)})
        return out[0] if len(out) == 1 else tuple(out)

