from soxai.progress import rate_text


def test_rate_text__fast_work_in_units_per_second():
    assert rate_text(1234.4, "samples") == "1,234 samples/s"


def test_rate_text__slow_work_in_seconds_per_unit_not_zero_per_second():
    assert rate_text(0.32, "epochs") == "3.1 s/epoch"
