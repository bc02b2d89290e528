"""Quantization: the recipe, observers, fake-quant simulation and the algorithms."""
