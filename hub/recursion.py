"""Keep Python's recursion guard: `py_ecc` (imported by eth_account/web3) raises the limit to 100,000 at import.

With that limit a deeply nested JSON body overflows the C stack (a segfault kills the service) instead of raising
RecursionError. `hub/__init__.py` imports py_ecc once here and puts the limit back, so later imports of it (cached in
sys.modules) change nothing; `serve()` checks again before a service starts.
"""

from __future__ import annotations

import contextlib
import sys

DEFAULT_LIMIT = 1000  # CPython's default


def pin_recursion_limit(limit: int = DEFAULT_LIMIT) -> None:
    """Import the known offenders now and leave the recursion limit at `limit`."""
    with contextlib.suppress(ImportError):
        import py_ecc  # noqa: F401 - imported for its side effect, which is undone below
    sys.setrecursionlimit(limit)
