"""Targets: one module per backend (constraints, lowering, runtime runner)."""
