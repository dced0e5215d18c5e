"""Errors the SDK raises: one type, with the platform's own explanation."""


class OpenLedgerError(Exception):
    """A platform call failed; `status` is the HTTP status (0 when the platform could not be reached)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class NotConnectedError(OpenLedgerError):
    """No platform URL or token was given and none is in the environment."""
