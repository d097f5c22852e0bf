"""Monitoring new data against the concepts of a reference run."""
