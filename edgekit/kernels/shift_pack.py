"""The packed weight format of a shift network (``model.shift`` in a bundle): each "pow2"
weight in its code bits (3 or 4), not in the int8 carrier the runtimes take.

Layout: ``EKSHIFT1``, a little-endian uint32 header length, a JSON header
``{"layers": [{"name", "shape", "code_bits", "zero_free", "alpha_offset", "codes_offset",
"codes_bytes"}]}``, then per layer its scales (float32 [C_out]) and its codes, ``code_bits`` bits
per weight in row-major order, least significant bit first (``numpy.packbits(...,
bitorder="little")``). A code is ``sign << (b - 1) | e``: zero-free (DenseShift) ``e = p``, the
weight ``+-2^p``; with zero (DeepShift) ``e = p + 1`` and code 0 the weight 0.
"""
from __future__ import annotations

import json
import struct

import numpy as np

from edgekit.quant.recipe import POW2, QuantRecipe

MAGIC = b"EKSHIFT1"


def encode(q: np.ndarray, bits: int, zero_free: bool) -> np.ndarray:
    """Integer weights (signed powers of two, or 0 unless ``zero_free``) -> codes uint8."""
    q = q.astype(np.int64)
    mag = np.abs(q)
    p = np.where(mag > 0, np.log2(np.maximum(mag, 1)).round().astype(np.int64), 0)
    e = p if zero_free else np.where(mag > 0, p + 1, 0)
    if (mag > 0).any() and ((1 << p[mag > 0]) != mag[mag > 0]).any():
        raise ValueError("a weight is not a signed power of two")
    if zero_free and (mag == 0).any():
        raise ValueError("a zero weight in a zero-free (DenseShift) layer")
    if e.max(initial=0) >= 1 << (bits - 1):
        raise ValueError(f"an exponent does not fit {bits - 1} bits")
    return ((q < 0).astype(np.int64) << (bits - 1) | e).astype(np.uint8)


def decode(codes: np.ndarray, bits: int, zero_free: bool) -> np.ndarray:
    """Codes -> integer weights int8 (the inverse of :func:`encode`)."""
    c = codes.astype(np.int64)
    sign = np.where(c >> (bits - 1) & 1, -1, 1)
    e = c & ((1 << (bits - 1)) - 1)
    if zero_free:
        return (sign * (1 << e)).astype(np.int8)
    return np.where(e == 0, 0, sign * (1 << np.maximum(e - 1, 0))).astype(np.int8)


def pack(recipe: QuantRecipe, zero_free: bool) -> bytes:
    """The packed file of the recipe's "pow2" layers (see the module docstring)."""
    layers, blobs, off = [], [], 0
    for name, lq in recipe.layers.items():
        if lq.weight.scheme != POW2:
            continue
        q = recipe.rounded_weights[name].numpy()
        bits = lq.weight.code_bits
        codes = encode(q.reshape(-1), bits, zero_free)
        planes = ((codes[:, None] >> np.arange(bits)) & 1).astype(np.uint8).reshape(-1)
        packed = np.packbits(planes, bitorder="little").tobytes()
        alpha = np.asarray(lq.weight.scale, np.float32).tobytes()
        layers.append({"name": name, "shape": list(q.shape), "code_bits": bits, "zero_free": zero_free,
                       "alpha_offset": off, "codes_offset": off + len(alpha), "codes_bytes": len(packed)})
        blobs += [alpha, packed]
        off += len(alpha) + len(packed)
    header = json.dumps({"layers": layers}).encode()
    return MAGIC + struct.pack("<I", len(header)) + header + b"".join(blobs)


def unpack(data: bytes) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{layer: (integer weights int8 [shape], alpha float32 [C_out])} from a packed file;
    ValueError when it is not one."""
    if data[:8] != MAGIC:
        raise ValueError("not an edgekit shift weight file")
    (n,) = struct.unpack("<I", data[8:12])
    header = json.loads(data[12:12 + n])
    body = data[12 + n:]
    out = {}
    for lay in header["layers"]:
        count, bits = int(np.prod(lay["shape"])), lay["code_bits"]
        c_out = lay["shape"][0]
        alpha = np.frombuffer(body[lay["alpha_offset"]:lay["alpha_offset"] + 4 * c_out], np.float32)
        raw = np.frombuffer(body[lay["codes_offset"]:lay["codes_offset"] + lay["codes_bytes"]], np.uint8)
        planes = np.unpackbits(raw, bitorder="little")[:count * bits].reshape(count, bits)
        codes = (planes.astype(np.int64) << np.arange(bits)).sum(1)
        out[lay["name"]] = (decode(codes, bits, lay["zero_free"]).reshape(lay["shape"]), alpha.copy())
    return out
