"""edgekit's version (a module of its own so that the layers need not import the package root)."""
__version__ = "0.1.0"
