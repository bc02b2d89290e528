"""Data-free calibration sources synthesized from a model's BatchNorm statistics, registered in
``edgekit.registry.SYNTHESIZERS`` as ``(CanonicalModel, SynthConfig, progress) -> CalibrationSource``."""
