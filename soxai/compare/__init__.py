"""Compare retrained variants: means, 95% intervals, gains over the baseline, detection quality."""
