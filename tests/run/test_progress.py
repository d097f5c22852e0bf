from soxai.progress import rate_text


def test_rate_text__fast_work_in_units_per_second():
    assert rate_text(1234.4, "samples") == "1,234 samples/s"


def test_rate_text__slow_work_in_seconds_per_unit_not_zero_per_second():
    assert rate_text(0.32, "epochs") == "3.1 s/epoch"


def test_progress__units_that_were_not_worked_on_stay_out_of_the_rate(monkeypatch):
    """A resumed train stage reuses most models: they move the bar, but the rate is the trained ones' (it showed
    '15/15 622 models/s' for a stage that trained none)."""
    import io

    import rich
    from rich.console import Console

    import soxai.progress as progress_module
    from soxai.progress import progress

    buf = io.StringIO()
    monkeypatch.setenv("SOXAI_PROGRESS", "1")
    monkeypatch.setattr(rich, "_console", Console(file=buf, force_terminal=True, width=120))
    times = [100.0, 100.5, 104.0]  # the block's start, then one reading per advance; the last one stays
    monkeypatch.setattr(progress_module, "time", type("Clock", (), {
        "monotonic": staticmethod(lambda: times.pop(0) if len(times) > 1 else times[0])}))
    with progress("retrain 4 models", 4, unit="models") as advance:
        advance(3, timed=False)  # reused: no rate yet
        advance(1)  # one model trained, 4 s after the block began
    out = buf.getvalue()
    assert "4.0 s/model" in out and "models/s" not in out
