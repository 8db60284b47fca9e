"""The metrics adapter: the collectors the alerting rules read behave as the rules
assume (docs/monitoring.md): the oldest-unacknowledged gauge is a creation time or
0, journal saves are counted by outcome, and the series the failure ratios divide
exist at 0 from the start, so a ratio is 0 rather than missing before the first
event. Read from the exposition text, as Prometheus reads it."""

from __future__ import annotations

import prometheus_client as prom

from mandrill.adapters import metrics


def sample(name: str, labels: str = "") -> float:
    """One sample's value from the default registry's /metrics text."""
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in prom.generate_latest().decode().splitlines():
        if not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            if key == wanted:
                return float(value)
    raise AssertionError(f"{wanted} not exposed")


def test_oldest_unacknowledged_is_a_creation_time_or_zero() -> None:
    observer = metrics.RestartObserver()
    observer.oldest_unacknowledged(1_767_322_800.0)
    name = "mandrill_restart_requests_oldest_unacknowledged_timestamp_seconds"
    assert sample(name) == 1_767_322_800.0
    observer.oldest_unacknowledged(None)
    assert sample(name) == 0.0


def test_journal_saves_are_counted_by_outcome() -> None:
    before = sample("mandrill_journal_saves_total", 'outcome="failed"')
    saved = sample("mandrill_journal_saves_total", 'outcome="saved"')
    metrics.journal_saved("failed")
    metrics.journal_saved("failed")
    assert sample("mandrill_journal_saves_total", 'outcome="failed"') == before + 2
    assert sample("mandrill_journal_saves_total", 'outcome="saved"') == saved


def test_the_series_failure_ratios_divide_exist_from_the_start() -> None:
    for name, labels in [
        ("mandrill_restart_requests_acknowledged_total", 'phase="Succeeded"'),
        ("mandrill_restart_requests_acknowledged_total", 'phase="Failed"'),
        ("mandrill_journal_saves_total", 'outcome="saved"'),
        ("mandrill_crawl_pages_total", 'outcome="ok"'),
        ("mandrill_crawl_pages_total", 'outcome="failed"'),
    ]:
        assert sample(name, labels) >= 0
