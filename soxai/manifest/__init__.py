"""The pruned training-set manifest."""
