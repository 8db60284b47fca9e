"""Errors that cross the domain/adapter boundary, classified by what the caller should do."""


class TransientError(Exception):
    """Worth retrying later: the API or the network hiccuped. Progress is kept."""


class PermanentError(Exception):
    """Retrying will not help (forbidden, target gone, invalid); the work ends Failed."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        """CamelCase, for a condition's or an Event's reason."""
        self.message = message


class StoreError(Exception):
    """The store could not be read or written."""
