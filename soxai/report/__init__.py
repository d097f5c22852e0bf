"""The HTML report and the terminal views of a run."""
