"""Bias detectors: score each concept, flag the ones tied to a shortcut, say why."""
