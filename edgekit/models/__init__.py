"""Model loading: the reference zoo, .pt2 files and ``package.module:factory`` specs."""
