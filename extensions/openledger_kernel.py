"""IPython extension the OpenLedger kernel loads at start: `ol` is ready, `%openledger` magics are there.

Loading never fails the kernel: outside a hub (no token in the env) `ol` is left unset with a hint.
"""

from __future__ import annotations

from IPython.core.interactiveshell import InteractiveShell

import openledger_sdk


def load_ipython_extension(shell: InteractiveShell) -> None:
    namespace = {"openledger_sdk": openledger_sdk}
    try:
        namespace["ol"] = openledger_sdk.connect()
    except openledger_sdk.NotConnectedError as err:
        print(f"OpenLedger: {err}")
    shell.push(namespace)
