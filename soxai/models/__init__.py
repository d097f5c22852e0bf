"""Model architectures (a registry by name) and checkpoint I/O."""
