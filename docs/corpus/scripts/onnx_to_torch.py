"""Usage: from onnx_to_torch import load; m = load('model.onnx', [1,3,224,224])  -> exportable torch.nn.Module"""
import os, tempfile, onnx
from onnx2torch import convert
from prep import prep
from export_fix import make_exportable

def load(onnx_path, input_shape):
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, 'prepped.onnx')
        prep(onnx_path, p, list(input_shape))      # Constant->initializer, onnxslim at fixed shape (BN kept), SAME pads explicit
        gm = convert(onnx.load(p)).eval()
    gm, _, _ = make_exportable(gm)                 # freeze constant Reshape/Slice/Resize args
    return gm
