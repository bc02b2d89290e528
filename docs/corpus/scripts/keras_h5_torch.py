"""Rebuild a small Keras 2.4 functional CNN (.h5: Conv2D / DepthwiseConv2D / BatchNormalization / Activation /
Add / AveragePooling2D / Flatten / Dense) as a torch.nn.Module (NCHW, BatchNorm2d kept). Needs h5py only."""
import json, h5py, numpy as np, torch
from torch import nn
import torch.nn.functional as F

def _same_pad(x, k, s):
    pads = []
    for i, kk, ss in zip(x.shape[2:][::-1], k[::-1], s[::-1]):   # W then H, as F.pad wants
        out = -(-i // ss); tot = max((out - 1) * ss + kk - i, 0)
        pads += [tot // 2, tot - tot // 2]                    # TF: extra padding at the end
    return F.pad(x, pads)

class KerasNet(nn.Module):
    def __init__(self, h5_path):
        super().__init__()
        f = h5py.File(h5_path, 'r'); cfg = json.loads(f.attrs['model_config'])['config']; W = f['model_weights']
        w = lambda name, var: torch.from_numpy(np.array(W[name][name][var + ':0']))
        self.plan = []; self.mods = nn.ModuleDict()
        for L in cfg['layers']:
            c, t, name = L['config'], L['class_name'], L['config']['name']
            ins = [n[0] for n in L['inbound_nodes'][0]] if L['inbound_nodes'] else []
            spec = {'type': t, 'name': name, 'ins': ins, 'cfg': c}
            if t == 'Conv2D':
                k = w(name, 'kernel'); m = nn.Conv2d(k.shape[2], k.shape[3], k.shape[:2], c['strides'], bias=c['use_bias'])
                m.weight.data = k.permute(3, 2, 0, 1).contiguous()
                if c['use_bias']: m.bias.data = w(name, 'bias')
                self.mods[name] = m
            elif t == 'DepthwiseConv2D':
                k = w(name, 'depthwise_kernel'); assert c['depth_multiplier'] == 1
                m = nn.Conv2d(k.shape[2], k.shape[2], k.shape[:2], c['strides'], groups=k.shape[2], bias=c['use_bias'])
                m.weight.data = k.permute(2, 3, 0, 1).contiguous()
                if c['use_bias']: m.bias.data = w(name, 'bias')
                self.mods[name] = m
            elif t == 'BatchNormalization':
                g = w(name, 'gamma'); m = nn.BatchNorm2d(g.shape[0], eps=c['epsilon'], momentum=1 - c['momentum'])
                m.weight.data, m.bias.data = g, w(name, 'beta')
                m.running_mean.data, m.running_var.data = w(name, 'moving_mean'), w(name, 'moving_variance')
                self.mods[name] = m
            elif t == 'Dense':
                k = w(name, 'kernel'); m = nn.Linear(k.shape[0], k.shape[1]); m.weight.data = k.t().contiguous(); m.bias.data = w(name, 'bias')
                self.mods[name] = m
            elif t not in ('InputLayer', 'Activation', 'Add', 'AveragePooling2D', 'Flatten'):
                raise NotImplementedError(t)
            self.plan.append(spec)
        self.output_name = cfg['output_layers'][0][0]

    @staticmethod
    def _act(x, a):
        return {'linear': lambda v: v, 'relu': F.relu, 'softmax': lambda v: F.softmax(v, -1)}[a](x)

    def forward(self, x):            # x: NCHW float
        vals = {}
        for s in self.plan:
            t, c = s['type'], s['cfg']; xs = [vals[i] for i in s['ins']]
            if t == 'InputLayer': y = x
            elif t in ('Conv2D', 'DepthwiseConv2D'):
                v = xs[0]
                if c['padding'] == 'same': v = _same_pad(v, c['kernel_size'], c['strides'])
                y = self._act(self.mods[s['name']](v), c['activation'])
            elif t == 'BatchNormalization': y = self.mods[s['name']](xs[0])
            elif t == 'Activation': y = self._act(xs[0], c['activation'])
            elif t == 'Add': y = xs[0] + xs[1]
            elif t == 'AveragePooling2D': y = F.avg_pool2d(xs[0], c['pool_size'], c['strides'])
            elif t == 'Flatten': y = xs[0].permute(0, 2, 3, 1).flatten(1)   # Keras flattens NHWC
            elif t == 'Dense': y = self._act(self.mods[s['name']](xs[0]), c['activation'])
            vals[s['name']] = y
        return vals[self.output_name]
