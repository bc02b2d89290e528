"""Stand-in for ExecuTorch's executor_runner (built with the event tracer), for the adb test:
the same flags, run by the real ExecuTorch runtime on this machine, writing a real ETDump."""
import argparse

import torch
from executorch.runtime import Runtime

ap = argparse.ArgumentParser()
ap.add_argument("--model_path", required=True)
ap.add_argument("--etdump_path", required=True)
ap.add_argument("--num_executions", type=int, default=1)
ap.add_argument("--cpu_threads", type=int, default=-1)
a = ap.parse_args()
program = Runtime.get().load_program(a.model_path, enable_etdump=True, debug_buffer_size=0)
method = program.load_method("forward")
x = torch.randn(*method.metadata.input_tensor_meta(0).sizes())
for _ in range(a.num_executions):
    method.execute([x])
program.write_etdump_result_to_file(a.etdump_path, a.etdump_path + ".debug")
