"""Stand-in for ExecuTorch's qnn_executor_runner (examples/qualcomm/executor_runner), for the adb
test: the same flags (--model_path, --input_list_path, --output_folder_path, --warm_up,
--iteration, --etdump_path). Like the real runner it needs the QNN HTP library on
LD_LIBRARY_PATH (here only its presence is checked) and raw inputs of the program's exact
sizes; it runs the .pte in the real ExecuTorch runtime of this machine (no Hexagon here: the
test's .pte is delegated to XNNPACK) and writes a real ETDump and the raw outputs."""
import argparse
import os
import sys
from pathlib import Path

import torch
from executorch.runtime import Runtime

ap = argparse.ArgumentParser()
for flag in ("model_path", "input_list_path", "output_folder_path", "etdump_path"):
    ap.add_argument(f"--{flag}", required=True)
ap.add_argument("--iteration", type=int, default=1)
ap.add_argument("--warm_up", type=int, default=0)
a = ap.parse_args()
dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
if not any((Path(d) / "libQnnHtp.so").is_file() for d in dirs) or not os.environ.get("ADSP_LIBRARY_PATH"):
    print("[ERROR] [Qnn ExecuTorch]: Cannot Open QNN library libQnnHtp.so", file=sys.stderr)
    sys.exit(1)
program = Runtime.get().load_program(a.model_path, enable_etdump=True, debug_buffer_size=0)
method = program.load_method("forward")
meta = method.metadata.input_tensor_meta(0)
files = Path(a.input_list_path).read_text().split()
raw = Path(files[0]).read_bytes()
if len(raw) != meta.nbytes():
    print(f"Input(0) size mismatch. file bytes: {len(raw)}, tensor bytes: {meta.nbytes()}", file=sys.stderr)
    sys.exit(1)
x = torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(*meta.sizes())
for _ in range(a.warm_up + a.iteration):
    out = method.execute([x])
out[0].numpy().tofile(Path(a.output_folder_path) / "output_0_0.raw")
program.write_etdump_result_to_file(a.etdump_path, a.etdump_path + ".debug")
