"""On-device profiling: runners per runtime, transports (local, http agent, ssh, adb), traces.

Entry points: :func:`edgekit.profiling.spec.resolve` (BUNDLE_OR_ARTIFACT -> artifact),
:func:`edgekit.profiling.transports.make_transport` (``--device`` -> Transport),
:class:`edgekit.runtimes.trace.Trace` (the result), :func:`edgekit.profiling.cli.register`
(the click commands). Submodules import their runtimes lazily, so importing this package is cheap.
"""
