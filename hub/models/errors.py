"""The error every models module raises: it carries the HTTP status the API answers with."""

from __future__ import annotations


class ModelError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
