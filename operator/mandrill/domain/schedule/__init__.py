"""RestartSchedule: cron in an IANA zone, windows, exclusions, and what is due now (pure)."""
