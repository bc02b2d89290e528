"""A stand-in for NVIDIA's ``trtexec`` (no TensorRT or GPU here): it takes the same flags and
writes the documented JSON formats (``--exportTimes``, ``--exportProfile``, ``--exportLayerInfo``
with ``--profilingVerbosity=detailed``, ``--exportOutput``), so the TensorRT runtime's transport
and parsing are tested. What it cannot be is TensorRT: its "engine" holds the ONNX, its layers
are a simple fusion (each compute node with its Q/DQ inputs and a following Relu, named and
annotated as TensorRT 10 does), its times are made up from the weight sizes, and its outputs
come from onnxruntime. Like TensorRT, it refuses a non-zero Q/DQ zero point.
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

MAGIC = b"EDGEKIT-STANDIN-ENGINE\n"
QDQ = ("QuantizeLinear", "DequantizeLinear")


def parse(argv):
    opts = {}
    for a in argv:
        k, _, v = a.lstrip("-").partition("=")
        opts[k] = v if _ else True
    return opts


def layers_of(model):
    """[(layer name, [node names], type)]: compute nodes with their Q/DQ inputs and a Relu after."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    owner, layers = {}, []
    for n in g.node:
        if n.op_type in QDQ or n.op_type == "Constant":
            continue
        src = producer.get(n.input[0]) if n.input else None
        if n.op_type == "Relu" and src is not None and src.name in owner and len(consumers[n.input[0]]) == 1:
            layers[owner[src.name]][1].append(n.name)
            owner[n.name] = owner[src.name]
            continue
        nodes = []
        for i in n.input:  # the DQ (and its Q) feeding this node
            dq = producer.get(i)
            if dq is not None and dq.op_type == "DequantizeLinear":
                q = producer.get(dq.input[0])
                nodes += ([q.name] if q is not None and q.op_type == "QuantizeLinear" else []) + [dq.name]
        owner[n.name] = len(layers)
        kind = {"Conv": "CaskConvolution", "Gemm": "CaskGemm", "MatMul": "CaskGemm"}.get(n.op_type, "PointWise")
        layers.append([n.op_type, nodes + [n.name], kind])
    return [(" + ".join(ns), ns, kind, op) for op, ns, kind in layers]


def main(argv):
    o = parse(argv)
    print("&&&& RUNNING TensorRT.trtexec [TensorRT v100300] (edgekit stand-in)")
    print("[I] TensorRT version: 10.3.0")
    if "onnx" in o:
        data = Path(o["onnx"]).read_bytes()
    else:
        raw = Path(o["loadEngine"]).read_bytes()
        if not raw.startswith(MAGIC):
            print("[E] Error[1]: engine deserialization failed")
            return 1
        data = raw[len(MAGIC):]
    model = onnx.load_from_string(data)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type in QDQ and len(n.input) > 2 and n.input[2] in inits and np.any(inits[n.input[2]] != 0):
            print(f"[E] Error[3]: {n.name}: TRT only supports symmetric quantization - zeroPt must be all zeros")
            return 1
    if "timingCacheFile" in o:
        cache = Path(o["timingCacheFile"])
        cache.write_bytes((cache.read_bytes() if cache.exists() else b"") + b"timing\n")
    if "saveEngine" in o:
        Path(o["saveEngine"]).write_bytes(MAGIC + data)
    if o.get("skipInference"):
        return 0
    layers = layers_of(model)
    cost = [0.002 + 1e-6 * sum(inits[i].size for n in model.graph.node if n.name in ns for i in n.input if i in inits)
            for _, ns, _, _ in layers]
    layers.insert(0, (f"Reformatting CopyNode for Input Tensor 0 to {layers[0][0]}", [], "Reformat", "Reformat"))
    cost.insert(0, 0.001)
    iters = int(o.get("iterations", 10))
    rng = np.random.default_rng(0)
    if "exportTimes" in o:
        times = []
        for k in range(iters):
            compute = sum(cost) * (1 + 0.05 * rng.random())
            times.append({"startEnqMs": k, "endEnqMs": k + 0.01, "startH2DMs": k, "endH2DMs": k + 0.003,
                          "startComputeMs": k + 0.003, "endComputeMs": k + 0.003 + compute,
                          "startD2HMs": k + 0.003 + compute, "endD2HMs": k + 0.005 + compute,
                          "h2dMs": 0.003, "computeMs": compute, "d2hMs": 0.002, "latencyMs": compute + 0.005})
        Path(o["exportTimes"]).write_text(json.dumps(times))
    if "exportProfile" in o:
        total = sum(cost)
        prof = [{"count": iters}] + [{"name": name, "timeMs": c * iters, "averageMs": c, "medianMs": c,
                                      "percentage": 100 * c / total} for (name, *_), c in zip(layers, cost)]
        Path(o["exportProfile"]).write_text(json.dumps(prof))
    if "exportLayerInfo" in o:
        info = {"Layers": [{"Name": name, "LayerType": kind, "Inputs": [], "Outputs": [], "TacticName": "standin",
                            "Metadata": "\x1f".join(f"[ONNX Layer: {n}]" for n in ns)}
                           for name, ns, kind, _ in layers], "Bindings": [i.name for i in model.graph.input]}
        Path(o["exportLayerInfo"]).write_text(json.dumps(info))
    if "exportOutput" in o:
        import onnxruntime as ort
        sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        feeds = {}
        for spec in str(o.get("loadInputs", "")).split(","):
            name, _, f = spec.rpartition(":")
            inp = next(i for i in sess.get_inputs() if i.name == name.strip("'"))
            feeds[inp.name] = np.fromfile(f, np.float32).reshape(inp.shape)
        outs = sess.run(None, feeds)
        Path(o["exportOutput"]).write_text(json.dumps(
            [{"name": s.name, "dimensions": "x".join(map(str, v.shape)), "values": v.reshape(-1).tolist()}
             for s, v in zip(sess.get_outputs(), outs)]))
    print("&&&& PASSED TensorRT.trtexec (edgekit stand-in)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
