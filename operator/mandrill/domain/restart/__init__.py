"""RestartRequest: select targets, save to the journal and restart concurrently, acknowledge."""
