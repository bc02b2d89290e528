"""Runtimes: one module per runtime (ExecuTorch, LiteRT, onnxruntime) checks an artifact's format,
loads it, runs it on arrays and times and traces it. Evaluation (through a target) and profiling
(local runs, the agent, ssh, adb) use the same :class:`edgekit.runtimes.base.Runtime`.
"""
