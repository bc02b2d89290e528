"""The ``executorch-qnn`` target: a .pte delegated to Qualcomm's QNN backend (Hexagon HTP).

ExecuTorch builds it with Qualcomm's QNN SDK (AI Engine Direct): the SDK's host libraries
compile the delegated graph into an HTP context binary inside the .pte. The SDK is Qualcomm's,
behind its licence; edgekit never downloads it, and ExecuTorch's Qualcomm backend tries to fetch
it when it is missing, so nothing of ``executorch.backends.qualcomm`` is imported here.

Where ``QNN_SDK_ROOT`` names no SDK, the target refuses in one line before any calibration,
saying what to install and which target works without it (``qnn-htp``: a QDQ ONNX and AIMET
encodings that Qualcomm's ``qnn-onnx-converter`` and AI Hub take). Lowering through an installed
SDK is not built: no SDK could be had to build or test it, so with one the target refuses too,
naming the same alternative. The adb path that profiles a QNN .pte on a phone
(``qnn_executor_runner``, ``--device-libs``) is in ``edgekit.runtimes.executorch``.
"""
from __future__ import annotations

import os
from pathlib import Path

from edgekit.backends.base import Target
from edgekit.errors import UserError
from edgekit.quant.recipe import QuantRecipe
from edgekit.registry import TARGETS

# a file every QNN SDK for Linux hosts has (the HTP backend library the converter loads)
SDK_MARKER = "lib/x86_64-linux-clang/libQnnHtp.so"
INSTEAD = ("use --target qnn-htp (a QDQ ONNX + encodings for qnn-onnx-converter and AI Hub) and build "
           "the .pte with ExecuTorch's Qualcomm scripts")


def sdk_root() -> Path | None:
    """The QNN SDK that ``QNN_SDK_ROOT`` names, or None when it is unset or holds no SDK."""
    root = os.environ.get("QNN_SDK_ROOT")
    if not root or not (Path(root) / SDK_MARKER).is_file():
        return None
    return Path(root)


class ExecuTorchQnn(Target):
    name = "executorch-qnn"

    def check(self, recipe: QuantRecipe) -> None:
        """Refuse before any work: without the QNN SDK (one line: what to install), and with it
        (lowering through the SDK is not built); then the profile's rules."""
        if sdk_root() is None:
            where = os.environ.get("QNN_SDK_ROOT")
            found = f"QNN_SDK_ROOT={where} holds no {SDK_MARKER}" if where else "QNN_SDK_ROOT is not set"
            raise UserError(f"target executorch-qnn needs Qualcomm's QNN SDK (AI Engine Direct) to build a .pte and "
                            f"{found}: install the SDK and set QNN_SDK_ROOT to its folder (edgekit never downloads "
                            f"it), or {INSTEAD}")
        raise UserError(f"target executorch-qnn: lowering through the QNN SDK at {sdk_root()} is not built in this "
                        f"edgekit; {INSTEAD}")

    def not_built_here(self) -> str:
        root = sdk_root()
        have = f"QNN SDK at {root}" if root else "no QNN SDK (QNN_SDK_ROOT)"
        return f"{have}; lowering through the SDK is not built in edgekit: {INSTEAD}"

    def lower(self, canonical, recipe, out_dir: Path, stem: str = "model"):
        self.check(recipe)


TARGETS.register("executorch-qnn", ExecuTorchQnn())
