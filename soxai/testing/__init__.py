"""Planted problems with known answers: toy models and data generators for tests and users."""
