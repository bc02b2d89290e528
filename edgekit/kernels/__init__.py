"""Reference kernels in numpy: what a device computes, written out (shift networks)."""
