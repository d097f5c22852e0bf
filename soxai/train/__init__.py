"""Training and evaluation of the baseline and the retrained variants."""
