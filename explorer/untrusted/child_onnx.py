"""Mode ``onnx`` of the limited child process (``child.py`` loads this file by path; see its docstring).

One ONNX graph is parsed with ``onnx`` and checked before onnxruntime is handed it: no external data (tensors
that name files outside the upload), only the standard operator domains, a bounded number of operators and
bounded declared tensor sizes, the main graph and every nested graph and model-local function alike. Then
onnxruntime loads it (refusing opsets and operators it does not ship) and runs it once on zeros. The result is
a small JSON description: inputs and outputs (name, shape with None for a size left open, the output shapes
that run produced), the opset, the number of operators and the producer's name.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np
from child import Refusal, cap_memory, library_detail, mib

STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")
REEXPORT = "export the encoder and the decoder again with torch.onnx.export (PyTorch) or tf2onnx (Keras)"
FLOAT32 = "export the model in float32 (model.float() before exporting)"
# bytes per value of each TensorProto.DataType (float, uint8, int8, uint16, int16, int32, int64, string, bool,
# float16, double, uint32, uint64, complex64, complex128, bfloat16); 1 for the rest
ITEM_BYTES = dict(enumerate((0, 4, 1, 1, 2, 2, 4, 8, 8, 1, 2, 8, 4, 8, 8, 16, 2)))
# onnxruntime's load errors with a remedy of ours ({v}: its version); others are passed on when short and plain
ORT_ERRORS = (
    (
        r"Opset (\d+) is under development.*?till opset (\d+)",
        "the graph needs opset {0} of the ONNX operators, newer than onnxruntime {v} runs (up to {1}); export with "
        "an older opset, e.g. torch.onnx.export(..., opset_version=18)",
    ),
    (
        r"No Op registered for (\w{1,60}) with domain_version of (\d+)",
        "the graph uses an operator named {0}, which ONNX opset {1} does not define and onnxruntime does not ship; "
        "export with standard operators only",
    ),
)


def read_onnx(data: bytes, request: dict[str, Any]) -> bytes:
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        raise Refusal(f"this is a zip archive (a .keras or torch.save file?), not an ONNX graph; {REEXPORT}")
    import onnx
    import onnxruntime as ort
    from google.protobuf.message import DecodeError

    cap_memory(request["memory_limit"])
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RecursionError, ValueError):
        raise Refusal(
            f"this is not a readable ONNX file: it is truncated or corrupt; copy it again, or {REEXPORT}"
        ) from None
    if not model.graph.node or not model.graph.output:
        raise Refusal(f"this file holds no ONNX graph (no operators or no outputs); {REEXPORT}")
    nodes = check_onnx_contents(model, request)
    ops = sorted({node.op_type[:40] for node in model.graph.node})[:64]  # what kind of network it is, for labels
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    producer = model.producer_name[:80]
    del model  # onnxruntime parses its own copy
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only; warnings would go to a stderr no one reads
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's errors derive from Exception alone
        text = str(exc)
        found = next(((m, words) for pattern, words in ORT_ERRORS if (m := re.search(pattern, text, re.S))), None)
        if found:
            raise Refusal(found[1].format(*found[0].groups(), v=ort.__version__)) from None
        raise Refusal(f"onnxruntime {ort.__version__} cannot load this graph{ort_detail(text)}; {REEXPORT}") from None
    inputs, outputs = run_once(session)
    description = {
        "inputs": inputs, "outputs": outputs, "opset": opset, "nodes": nodes, "producer": producer, "ops": ops,
    }  # fmt: skip
    return json.dumps(description).encode("utf-8")


def check_onnx_contents(model: Any, request: dict[str, Any]) -> int:
    """Refuse what onnxruntime must never be handed; returns the number of operators, subgraphs included.

    Walks the main graph, graphs nested in node attributes (If / Loop / Scan bodies) and model-local functions.
    Every tensor or graph field present in an attribute is checked, whatever type the attribute claims."""
    from onnx import TensorProto

    max_nodes, max_elements = request["max_nodes"], request["max_elements"]
    tensors: list[Any] = []  # TensorProto
    shapes: list[tuple[str, list[int]]] = []  # (what, declared dims) of values and sparse tensors
    pending: list[Any] = [model.graph, *model.functions]  # GraphProto or FunctionProto
    nodes = 0

    def add_sparse(sparse: Any) -> None:
        tensors.extend((sparse.values, sparse.indices))
        shapes.append((f"sparse tensor {shown(sparse.values.name)}", list(sparse.dims)))

    while pending:
        graph = pending.pop()
        attributes = list(getattr(graph, "attribute_proto", ()))  # a function's attribute defaults
        if hasattr(graph, "initializer"):  # a GraphProto; functions hold no weights or shapes of their own
            tensors.extend(graph.initializer)
            for sparse in graph.sparse_initializer:
                add_sparse(sparse)
            for value in (*graph.input, *graph.output, *graph.value_info):
                dims = value.type.tensor_type.shape.dim
                shapes.append((f"value {shown(value.name)}", [d.dim_value for d in dims if d.HasField("dim_value")]))
        for node in graph.node:
            nodes += 1
            if nodes > max_nodes:
                raise Refusal(
                    f"the graph has more than {max_nodes:,} operators (an autoencoder has hundreds) and was not "
                    "loaded; export a smaller model"
                )
            if node.domain not in STANDARD_DOMAINS:
                raise Refusal(
                    f"the graph uses the operator {shown(node.op_type)} of the custom domain {shown(node.domain)}, "
                    "which onnxruntime does not ship; only standard ONNX operators run here: export without "
                    "custom operators"
                )
            attributes.extend(node.attribute)
        for attr in attributes:
            tensors.extend([attr.t] if attr.HasField("t") else [])
            tensors.extend(attr.tensors)
            for sparse in [*([attr.sparse_tensor] if attr.HasField("sparse_tensor") else []), *attr.sparse_tensors]:
                add_sparse(sparse)
            pending.extend([attr.g] if attr.HasField("g") else [])
            pending.extend(attr.graphs)
    outside = [t for t in tensors if t.data_location == TensorProto.EXTERNAL or len(t.external_data)]
    if outside:
        where = next((e.value for e in outside[0].external_data if e.key == "location"), "")
        raise Refusal(
            f"the weights are not inside the file: {len(outside)} tensor(s) refer to external data (e.g. "
            f"{shown(outside[0].name)}{f' in {shown(where)}' if where else ''}), and nothing outside the upload is "
            "read; export with the weights inside the file: torch.onnx.export(..., external_data=False), or "
            "onnx.save(model, path, save_as_external_data=False)"
        )
    total = sum(
        declared_size(f"tensor {shown(t.name)}", list(t.dims), max_elements) * ITEM_BYTES.get(t.data_type, 1)
        for t in tensors
    )
    for what, dims in shapes:
        declared_size(what, dims, max_elements)
    if total > request["max_bytes"]:
        raise Refusal(
            f"the tensors in the graph declare {mib(total)} in all, more than the {mib(request['max_bytes'])} a "
            "model file may hold; the file is corrupt or not an autoencoder"
        )
    return nodes


def declared_size(what: str, dims: list[int], max_elements: int) -> int:
    """The number of values ``dims`` declares; refused when negative or absurd, before anything is allocated."""
    count = math.prod(dims)
    if min(dims, default=0) < 0 or count > max_elements:
        raise Refusal(
            f"{what} declares the shape {' x '.join(map(str, dims))} ({count:,} values); at most {max_elements:,} "
            "values are allowed, far above any autoencoder's layer, so the file is corrupt or hostile and was not "
            "loaded"
        )
    return count


def shown(text: str, limit: int = 60) -> str:
    """A name from the file, quoted, printable and short, for a message."""
    clean = "".join(c if c.isprintable() else "?" for c in text)
    return "'" + (clean if len(clean) <= limit else clean[: limit - 1] + "…") + "'"


def ort_detail(text: str) -> str:
    """' (onnxruntime's reason)' without its status prefix and C++ source location, when short and plain; else ''."""
    if re.search(r"bad_alloc|Failed to allocate", text):
        raise MemoryError
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text.strip())
    detail = library_detail(re.sub(r"^/\S+:\d+ .*?\)\s+", "", text))
    return f" ({detail})" if detail else ""


def run_once(session: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Descriptions of the inputs and outputs, after one run on zeros (batch 1, or the graph's fixed batch)."""
    inputs, feeds = [], {}
    for value in session.get_inputs():
        where, shape = f"the input {shown(value.name)}", dims(value.shape)
        if value.type != "tensor(float)":
            raise Refusal(f"{where} is a {value.type}; {FLOAT32}")
        if not shape or None in shape[1:]:
            raise Refusal(
                f"{where} has the shape {fmt(shape)}: only its first size (the batch) may be left open; export with "
                "a sample input of the real image size and only the batch size dynamic"
            )
        feeds[value.name] = np.zeros([d or 1 for d in shape], np.float32)  # an open batch: 1
        inputs.append({"name": value.name, "shape": shape})
    try:
        results = session.run(None, feeds)
    except Exception as exc:
        zeros = ", ".join(fmt(list(f.shape)) for f in feeds.values())
        raise Refusal(
            f"the graph failed when run once on zeros of shape {zeros}{ort_detail(str(exc))}; {REEXPORT}"
        ) from None
    outputs = []
    for value, result in zip(session.get_outputs(), results):
        if value.type != "tensor(float)":
            raise Refusal(f"the output {shown(value.name)} is a {value.type}; {FLOAT32}")
        outputs.append({"name": value.name, "shape": dims(value.shape), "run_shape": list(np.shape(result))})
    return inputs, outputs


def dims(shape: list[Any]) -> list[int | None]:
    """onnxruntime's shape (sizes, names of dynamic sizes, None) with None for every size not fixed."""
    return [d if isinstance(d, int) and d > 0 else None for d in shape]


def fmt(shape: list[Any]) -> str:
    return "[" + ", ".join("batch" if d is None else str(d) for d in shape) + "]"
