"""Prefect flows: thin wrappers, one task per soxai stage runner."""
