"""The spectral view of a run's network: layer spectra, the frequency content of concepts, and a sparse
linear surrogate over concepts (docs/SPECTRAL.md)."""
