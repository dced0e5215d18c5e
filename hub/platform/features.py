"""The platform's features, in start order. A new feature adds one line here."""

from __future__ import annotations

from hub.platform import progress, users
from hub.platform.runtime import Feature

FEATURES: list[Feature] = [
    users.feature,
    progress.feature,
]
