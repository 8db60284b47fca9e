"""Names shared by the CRDs, the handlers and the adapters: one place to change them."""

from typing import Final

GROUP: Final = "mandrill.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

RESTART_REQUESTS: Final = "restartrequests"
RESTART_REQUEST_KIND: Final = "RestartRequest"
CRAWL_JOBS: Final = "crawljobs"
RESTART_SCHEDULES: Final = "restartschedules"
RESTART_SCHEDULE_KIND: Final = "RestartSchedule"

SCHEDULE_UID_LABEL: Final = f"{GROUP}/schedule-uid"
"""On each run (RestartRequest) of a RestartSchedule: the schedule's UID, to list its runs."""

SCHEDULED_TIME_ANNOTATION: Final = f"{GROUP}/scheduled-time"
"""On each run: the run's time (RFC 3339, UTC), which its name is made from."""

PROTECTED_ANNOTATION: Final = f"{GROUP}/protected"
"""A pod or workload annotated with this set to "true" is never restarted."""

RESTARTED_BY_ANNOTATION: Final = f"{GROUP}/restarted-by"
"""Set on a workload's pod template by RolloutRestart: the request's UID.

It makes the rollout idempotent: a resumed request sees its own mark and does
not roll the workload a second time."""

RESTARTED_AT_ANNOTATION: Final = "kubectl.kubernetes.io/restartedAt"
"""The annotation `kubectl rollout restart` sets; we set the same one."""
