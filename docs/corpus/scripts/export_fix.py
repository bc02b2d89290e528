"""Post-process an onnx2torch GraphModule so torch.export works: onnx2torch's Reshape/Slice/Resize modules
read their (constant) shape/starts/scales tensors at run time (.numpy(), torch.any(shape == 0), .tolist()),
which torch.export sees as data-dependent. Freeze those constant arguments into Python values."""
import inspect, torch, torch.fx as fx
import torch.nn.functional as F
from onnx2torch.node_converters.slice import _get_slices, _do_slice
from onnx2torch.node_converters.resize import _onnx_mode_to_torch_mode

class FrozenReshape(torch.nn.Module):
    def __init__(self, shape): super().__init__(); self.shape = [int(s) for s in shape]
    def forward(self, x):
        return torch.reshape(x, [x.shape[i] if s == 0 else s for i, s in enumerate(self.shape)])

class FrozenSlice(torch.nn.Module):
    def __init__(self, starts, ends, axes, steps):
        super().__init__()
        f, p, n = _get_slices(starts.tolist(), ends.tolist(), axes, steps)
        conv = lambda s: s if not isinstance(s, slice) else slice(*(None if v is None else int(v) for v in (s.start, s.stop, s.step)))
        self.f = [int(d) for d in f]; self.p = [conv(s) for s in p]; self.n = [conv(s) for s in n]
    def forward(self, x): return _do_slice(x, self.f, self.p, self.n)

class FrozenResize(torch.nn.Module):
    def __init__(self, onnx_mode, align_corners, scales, sizes):
        super().__init__()
        self.onnx_mode, self.align_corners = onnx_mode, align_corners
        self.scales = None if scales is None or scales.numel() == 0 else [float(v) for v in scales.tolist()[2:]]
        self.sizes = None if sizes is None or sizes.numel() == 0 else [int(v) for v in sizes.tolist()[2:]]
    def forward(self, x):
        return F.interpolate(x, size=self.sizes, scale_factor=self.scales,
                             mode=_onnx_mode_to_torch_mode(self.onnx_mode, x.dim() - 2), align_corners=self.align_corners)

def _const(gm, a):
    if a is None: return None
    if isinstance(a, fx.Node) and a.op == 'get_attr':
        obj = gm
        for part in a.target.split('.'): obj = getattr(obj, part)
        return obj.detach()
    raise ValueError('not constant')

def make_exportable(gm):
    n_frozen, skipped = 0, []
    for node in list(gm.graph.nodes):
        if node.op != 'call_module': continue
        mod = gm.get_submodule(node.target); cls = type(mod).__name__
        if cls not in ('OnnxReshape', 'OnnxSlice', 'OnnxResize', 'OnnxResizeV10'): continue
        b = inspect.signature(mod.forward).bind(*node.args, **node.kwargs).arguments
        try:
            if cls == 'OnnxReshape': new = FrozenReshape(_const(gm, b['shape']).tolist())
            elif cls == 'OnnxSlice':
                ax, st = _const(gm, b.get('axes')), _const(gm, b.get('steps'))
                new = FrozenSlice(_const(gm, b['starts']), _const(gm, b['ends']), ax, st)
            elif cls == 'OnnxResize':
                new = FrozenResize(mod.onnx_mode, mod.align_corners, _const(gm, b.get('scales')), _const(gm, b.get('sizes')))
            else:
                new = FrozenResize(mod._resize.onnx_mode, None, _const(gm, b['scales']), None)
        except ValueError:
            skipped.append(node.target); continue
        name = 'frozen_' + node.target.replace('.', '_').replace('/', '_')
        gm.add_submodule(name, new)
        node.target = name; node.args = (b['input_tensor'],); node.kwargs = {}
        n_frozen += 1
    gm.graph.eliminate_dead_code(); gm.delete_all_unused_submodules(); gm.recompile()
    return gm, n_frozen, skipped
