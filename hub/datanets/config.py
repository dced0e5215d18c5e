"""Datanet limits and dedup knobs, with defaults that suit a workshop-sized hub.

`settings` is the module-level object the service reads. The platform feature replaces it at startup with
`Settings.datanets` when the hub's settings have that section (keys as in `DatanetSettings`, e.g.
`[datanets] max_upload_bytes = 67108864` in `openledger.toml` or `OPENLEDGER_DATANETS__MAX_UPLOAD_BYTES`).
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class DatanetSettings(BaseModel):
    # One row's canonical JSON; one upload's raw bytes (checked from Content-Length before the body is read).
    max_row_bytes: int = Field(64 * 1024, ge=64)
    max_upload_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    max_rows_per_upload: int = Field(200_000, ge=1)
    # Near duplicates: estimated Jaccard similarity of character shingles at or above the threshold is rejected.
    near_dup_threshold: float = Field(0.85, gt=0, le=1)
    near_dup_num_perm: int = Field(128, ge=16, le=512)
    near_dup_shingle: int = Field(5, ge=2, le=16)
    # Very short rows share too few shingles for a meaningful similarity; they get exact dedup only.
    near_dup_min_chars: int = Field(24, ge=0)
    # Create, approve and publish the demo datanet at platform start when it is missing.
    seed_demo: bool = False


settings = DatanetSettings()


def configure(new: DatanetSettings | dict | None = None, **overrides: object) -> DatanetSettings:
    """Update the module-level settings in place (so every `from ... import settings` sees it) and return them."""
    values = settings.model_dump()
    if new is not None:
        values |= new.model_dump() if isinstance(new, BaseModel) else dict(new)
    validated = DatanetSettings(**(values | overrides))
    for name in DatanetSettings.model_fields:
        setattr(settings, name, getattr(validated, name))
    return settings
