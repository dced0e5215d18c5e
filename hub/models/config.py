"""Limits of the models API, with defaults that suit a workshop-sized hub.

The whole publish request (adapter, manifest and attribution indexes) is refused from its Content-Length before the
body is read; its limit is `[models] max_upload_bytes` in the hub settings.
"""

from __future__ import annotations

from hub.settings import Settings

MAX_FILES = 16  # parts named `files` in one publish request
MAX_FIELD_BYTES = 64 * 1024  # one plain form field (name, price, manifest hash)
MAX_JSON_BYTES = 8 << 20  # manifest.json and adapter_config.json are parsed in memory


def max_upload_bytes(settings: Settings) -> int:
    # Default 1 GiB: a 135M base with r=64 on all linears is ~50 MB; attribution indexes add ~2 KB per row.
    return settings.models.max_upload_bytes
