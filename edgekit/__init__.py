"""edgekit: quantize trained PyTorch vision models (with or without data) and ship them to edge runtimes."""
__version__ = "0.1.0"
