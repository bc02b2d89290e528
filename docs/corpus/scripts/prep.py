"""Make an ONNX model onnx2torch/torch.export friendly at a fixed input shape, keeping BatchNormalization."""
import sys, onnx, numpy as np, onnxslim
from onnx import helper, numpy_helper, shape_inference

def consts_to_initializers(m):
    g = m.graph; keep = []; n = 0
    for node in g.node:
        if node.op_type == 'Constant' and len(node.attribute) == 1 and node.attribute[0].name == 'value':
            t = onnx.TensorProto(); t.CopyFrom(node.attribute[0].t); t.name = node.output[0]
            g.initializer.append(t); n += 1
        else:
            keep.append(node)
    del g.node[:]; g.node.extend(keep)
    return n

def explicit_same_pads(m):
    m = shape_inference.infer_shapes(m)
    shapes = {}
    for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        d = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [x.dim_value if x.HasField('dim_value') else None for x in d]
    inits = {i.name: i for i in m.graph.initializer}
    n = 0
    for node in m.graph.node:
        if node.op_type not in ('Conv', 'MaxPool', 'AveragePool'): continue
        attrs = {a.name: a for a in node.attribute}
        if 'auto_pad' not in attrs or attrs['auto_pad'].s.decode() not in ('SAME_UPPER', 'SAME_LOWER'): continue
        mode = attrs['auto_pad'].s.decode()
        ish = shapes[node.input[0]][2:]
        if node.op_type == 'Conv':
            k = list(attrs['kernel_shape'].ints) if 'kernel_shape' in attrs else list(numpy_helper.to_array(inits[node.input[1]]).shape[2:])
        else:
            k = list(attrs['kernel_shape'].ints)
        s = list(attrs['strides'].ints) if 'strides' in attrs else [1] * len(k)
        dl = list(attrs['dilations'].ints) if 'dilations' in attrs else [1] * len(k)
        b, e = [], []
        for i_, k_, s_, d_ in zip(ish, k, s, dl):
            out = -(-i_ // s_); tot = max((out - 1) * s_ + (k_ - 1) * d_ + 1 - i_, 0)
            lo = tot // 2 if mode == 'SAME_UPPER' else tot - tot // 2
            b.append(lo); e.append(tot - lo)
        node.attribute.remove(attrs['auto_pad'])
        if 'pads' in attrs: node.attribute.remove(attrs['pads'])
        node.attribute.append(helper.make_attribute('pads', b + e)); n += 1
    return m, n

def prep(src, dst, shape):
    m = onnx.load(src)
    nc = consts_to_initializers(m)
    iname = [i.name for i in m.graph.input if i.name not in {x.name for x in m.graph.initializer}][0]
    m = onnxslim.slim(m, input_shapes=[f"{iname}:{','.join(map(str, shape))}"],
                      skip_fusion_patterns=['FusionConvBN', 'FusionConvTransposeBN'])
    m, npad = explicit_same_pads(m)
    onnx.save(m, dst)
    from collections import Counter
    c = Counter(n.op_type for n in m.graph.node)
    print(f'{src}: consts->init {nc}, same->explicit pads {npad}, nodes {len(m.graph.node)}, BN {c.get("BatchNormalization",0)}, ops {dict(c.most_common(12))}', file=sys.stderr)

if __name__ == '__main__':
    prep(sys.argv[1], sys.argv[2], [int(v) for v in sys.argv[3].split(',')])
