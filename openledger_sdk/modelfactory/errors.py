"""ModelFactory errors: all are `OpenLedgerError`s, and bad settings are also `ValueError`s."""

from __future__ import annotations

from openledger_sdk.errors import OpenLedgerError


class FinetuneError(OpenLedgerError, ValueError):
    """A fine-tuning setting or input is unusable; the message says which and what to do."""


class TrainingOutOfMemory(OpenLedgerError, MemoryError):
    """Training ran out of (GPU or host) memory; the message suggests smaller settings."""


class IncompleteModelError(OpenLedgerError):
    """The model's training was stopped before the end (or its files do not match its manifest): not publishable."""
