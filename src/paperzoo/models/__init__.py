"""The architectures, one file per paper, grouped by task. Loaded lazily by the registry."""
