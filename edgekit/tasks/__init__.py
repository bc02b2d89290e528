"""Tasks (one module each, registered in ``edgekit.registry.TASKS``): classification,
super_resolution. See ``edgekit.tasks.base``."""
