"""Real data sets shipped with or installed for edgekit."""
