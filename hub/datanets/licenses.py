"""SPDX license identifiers a datanet may carry (https://spdx.org/licenses/): data, content and code licenses."""

from __future__ import annotations

SPDX_IDS: tuple[str, ...] = (
    # Open data and content
    "CC0-1.0",
    "CC-BY-1.0",
    "CC-BY-2.0",
    "CC-BY-2.5",
    "CC-BY-3.0",
    "CC-BY-4.0",
    "CC-BY-SA-2.0",
    "CC-BY-SA-2.5",
    "CC-BY-SA-3.0",
    "CC-BY-SA-4.0",
    "CC-BY-NC-2.0",
    "CC-BY-NC-3.0",
    "CC-BY-NC-4.0",
    "CC-BY-NC-SA-2.0",
    "CC-BY-NC-SA-3.0",
    "CC-BY-NC-SA-4.0",
    "CC-BY-ND-3.0",
    "CC-BY-ND-4.0",
    "CC-BY-NC-ND-3.0",
    "CC-BY-NC-ND-4.0",
    "CC-PDDC",
    "PDDL-1.0",
    "ODC-By-1.0",
    "ODbL-1.0",
    "CDLA-Permissive-1.0",
    "CDLA-Permissive-2.0",
    "CDLA-Sharing-1.0",
    "C-UDA-1.0",
    "OGL-UK-3.0",
    "OGL-Canada-2.0",
    "DL-DE-BY-2.0",
    "GFDL-1.3-only",
    "GFDL-1.3-or-later",
    "Unlicense",
    "0BSD",
    # Software (datasets of code or model outputs often carry these)
    "Apache-2.0",
    "MIT",
    "MIT-0",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "ISC",
    "Zlib",
    "MPL-2.0",
    "EPL-2.0",
    "LGPL-2.1-only",
    "LGPL-2.1-or-later",
    "LGPL-3.0-only",
    "LGPL-3.0-or-later",
    "GPL-2.0-only",
    "GPL-2.0-or-later",
    "GPL-3.0-only",
    "GPL-3.0-or-later",
    "AGPL-3.0-only",
    "AGPL-3.0-or-later",
    "BSL-1.0",
    "WTFPL",
)

_BY_LOWER = {spdx.lower(): spdx for spdx in SPDX_IDS}


def canonical_license(value: str) -> str | None:
    """The SPDX id as the list spells it (matching ignores case), or None if it is not on the list."""
    return _BY_LOWER.get(value.strip().lower()) if isinstance(value, str) else None
