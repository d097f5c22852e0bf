"""Concepts: HDBSCAN clusters of the explanation embedding (noise is concept -1)."""
