"""The decision: a worker Job's status and the store's counts -> the CrawlJob's phase (no cluster).

Covers: a Job's status read from its API body; Running while the Job runs,
whatever the store says; Succeeded only with the Job Complete and the
frontier finished (nothing pending, or the maxPages budget spent); a Job that
completed with URLs left, or never seeded, is Failed with the count; a
failed Job is Failed; totalTimeoutSeconds ends Succeeded as TotalTimeout,
also when Kubernetes ended the Job at its deadline after the timeout (but
not before it);
the status patches (counters, workers, conditions keeping their time).
"""

from __future__ import annotations

import datetime

from mandrill.domain.crawl import worker_status
from mandrill.domain.crawl.job import JobRef, Phase, StoredResults
from mandrill.domain.crawl.worker_status import JobState, StoreProgress

T0 = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)
JOB = JobRef(namespace="team-a", name="docs", uid="u-1", generation=2)
RUNNING = JobState(desired=3, active=3, ready=3)
COMPLETE = JobState(desired=3, succeeded=3, complete=True)
FINISHED = StoreProgress(pending=0, done=5, pages_ok=4, failures={"http_status": 1}, links=9)


def decide(state: JobState, progress: StoreProgress, **kw: object) -> worker_status.Verdict:
    args: dict[str, object] = {"max_pages": 100, "total_timeout": None, "elapsed": 10.0, **kw}
    return worker_status.decide(state, progress, **args)  # type: ignore[arg-type]


def test_the_job_state_is_read_from_the_jobs_body() -> None:
    body = {
        "spec": {"completions": 3},
        "status": {
            "active": 1,
            "ready": 1,
            "succeeded": 2,
            "failed": 1,
            "conditions": [{"type": "Complete", "status": "True"}],
        },
    }
    assert JobState.from_job(body) == JobState(
        desired=3, active=1, ready=1, succeeded=2, failed=1, complete=True
    )
    failed = {
        "spec": {"completions": 2},
        "status": {
            "conditions": [
                {"type": "FailureTarget", "status": "True"},
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit"},
            ]
        },
    }  # fmt: skip
    state = JobState.from_job(failed)
    assert state.failure == "BackoffLimitExceeded: Job has reached the specified backoff limit"
    assert state.failure_reason == "BackoffLimitExceeded"
    assert state.ended
    assert not state.complete
    assert JobState.from_job({"spec": {"completions": 2}}) == JobState(desired=2)


def test_running_while_the_job_runs_even_if_the_store_looks_finished() -> None:
    verdict = decide(RUNNING, FINISHED)
    assert verdict.phase is Phase.RUNNING
    assert verdict.reason == "WorkersRunning"
    assert verdict.message == "3 of 3 workers running; 5 of 5 URLs done"


def test_succeeded_when_the_job_completed_and_nothing_is_pending() -> None:
    verdict = decide(COMPLETE, FINISHED)
    assert (verdict.phase, verdict.reason) == (Phase.SUCCEEDED, "Completed")
    assert verdict.message == "4 pages fetched, 1 failed, 9 links, by 3 workers"


def test_succeeded_when_the_budget_is_spent_with_urls_still_pending() -> None:
    progress = StoreProgress(pending=7, done=3, pages_ok=3)
    assert decide(COMPLETE, progress, max_pages=3).phase is Phase.SUCCEEDED
    assert decide(COMPLETE, progress, max_pages=4).phase is Phase.FAILED


def test_failed_with_the_count_when_the_job_completed_with_urls_left() -> None:
    verdict = decide(COMPLETE, StoreProgress(pending=4, done=6, pages_ok=6))
    assert (verdict.phase, verdict.reason) == (Phase.FAILED, "FrontierUnfinished")
    assert verdict.message == (
        "all 3 workers exited but the crawl is not finished: 4 of 10 URLs left"
    )


def test_failed_when_the_job_completed_without_seeding_the_frontier() -> None:
    verdict = decide(COMPLETE, StoreProgress())
    assert (verdict.phase, verdict.reason) == (Phase.FAILED, "FrontierUnfinished")
    assert "no worker seeded the frontier" in verdict.message


def test_a_failed_job_fails_the_crawljob_even_with_the_frontier_finished() -> None:
    state = JobState(desired=2, failed=2, failure="BackoffLimitExceeded: too many")
    verdict = decide(state, FINISHED)
    assert (verdict.phase, verdict.reason) == (Phase.FAILED, "WorkersFailed")
    assert verdict.message == (
        "the worker Job failed (BackoffLimitExceeded: too many); 0 of 5 URLs left"
    )


def test_the_total_timeout_ends_succeeded_as_a_single_process_crawl_does() -> None:
    progress = StoreProgress(pending=2, done=3, pages_ok=3)
    timed = decide(COMPLETE, progress, total_timeout=60.0, elapsed=61.0)
    assert (timed.phase, timed.reason) == (Phase.SUCCEEDED, "TotalTimeout")
    early = decide(COMPLETE, progress, total_timeout=60.0, elapsed=30.0)
    assert early.phase is Phase.FAILED


def test_a_job_ended_at_its_deadline_after_the_total_timeout_is_that_timeout() -> None:
    progress = StoreProgress(pending=2, done=3, pages_ok=3)
    ended = JobState(
        desired=3,
        succeeded=1,
        failed=2,
        failure="DeadlineExceeded: Job was active longer than specified deadline",
        failure_reason="DeadlineExceeded",
    )
    timed = decide(ended, progress, total_timeout=60.0, elapsed=125.0)
    assert (timed.phase, timed.reason) == (Phase.SUCCEEDED, "TotalTimeout")
    assert timed.message == (
        "stopped by totalTimeoutSeconds (the Job's deadline ended the workers still running): "
        "3 pages fetched, 0 failed, 0 links, by 3 workers; 2 of 5 URLs left"
    )
    # Before the timeout (a deadline someone else set), or with none, it is a failure.
    assert decide(ended, progress, total_timeout=600.0, elapsed=125.0).reason == "WorkersFailed"
    assert decide(ended, progress, elapsed=125.0).reason == "WorkersFailed"


def test_the_running_patch_carries_counters_and_workers() -> None:
    seen = worker_status.workers(RUNNING, job="mandrill-system/crawl-u-1-docs", desired=3)
    patch = worker_status.running(
        decide(RUNNING, FINISHED), FINISHED, workers_status=seen, elapsed=12.7, now=T0, job=JOB
    )
    assert patch["phase"] == "Running"
    assert patch["workers"] == {
        "job": "mandrill-system/crawl-u-1-docs",
        "desired": 3,
        "active": 3,
        "ready": 3,
        "succeeded": 0,
        "failed": 0,
    }
    assert (patch["pagesFetched"], patch["pagesFailed"], patch["linksFound"]) == (4, 1, 9)
    assert patch["errorsByKind"] == {"http_status": 1}
    assert patch["progress"]["done"] == 5
    assert patch["progress"]["scheduled"] == 5
    assert patch["progress"]["elapsedSeconds"] == 12
    assert patch["observedGeneration"] == 2
    assert "conditions" not in patch


def test_no_job_yet_shows_only_the_desired_workers() -> None:
    assert worker_status.workers(None, job="ns/j", desired=4) == {
        "job": "ns/j", "desired": 4, "active": 0, "ready": 0, "succeeded": 0, "failed": 0,
    }  # fmt: skip


def test_the_final_patch_sets_conditions_keeping_a_held_ones_time() -> None:
    verdict = decide(COMPLETE, FINISHED)
    ended = worker_status.outcome(
        verdict,
        FINISHED,
        seeds=1,
        started=T0,
        now=T0 + datetime.timedelta(seconds=30),
        results=StoredResults(store="postgresql://m:***@db/m", pages=5, edges=9),
    )
    earlier = "2026-01-01T11:00:00.000000Z"
    previous = {
        "conditions": [{"type": "Failed", "status": "False", "lastTransitionTime": earlier}]
    }
    seen = worker_status.workers(COMPLETE, job="ns/j", desired=3)
    patch = worker_status.final(ended, workers_status=seen, job=JOB, previous=previous)
    assert patch["phase"] == "Succeeded"
    assert patch["reason"] == "Completed"
    assert patch["pagesFetched"] == 4
    assert patch["results"]["pages"] == 5
    assert patch["results"]["jobUID"] == "u-1"
    assert patch["workers"]["succeeded"] == 3
    kinds = {c["type"]: c for c in patch["conditions"]}
    assert kinds["Complete"]["status"] == "True"
    assert kinds["Complete"]["lastTransitionTime"] == "2026-01-01T12:00:30.000000Z"
    assert kinds["Failed"]["status"] == "False"
    assert kinds["Failed"]["lastTransitionTime"] == earlier
    assert kinds["Failed"]["observedGeneration"] == 2
