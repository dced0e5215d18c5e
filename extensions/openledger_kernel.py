"""IPython extension the OpenLedger kernel loads at start: `ol` is ready, `%openledger` magics are there.

Loading never fails the kernel: outside a hub (no token in the env) `ol` is left unset with a hint.
"""

from __future__ import annotations

import os
import warnings

from IPython.core.interactiveshell import InteractiveShell

import openledger_sdk
from extensions import memory_limit
from extensions.magics import OpenLedgerMagics


def apply_gpu_share() -> None:
    """On a shared GPU slot the spawner sets OPENLEDGER_GPU_FRACTION: cap this kernel's CUDA memory to it."""
    fraction = os.environ.get("OPENLEDGER_GPU_FRACTION")
    if not fraction:
        return  # whole GPU or CPU: importing torch here would only slow the kernel's start
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(float(fraction))


def quiet_library_warnings() -> None:
    """Deprecation notices of the libraries under the SDK (transformers, via peft) say nothing a notebook user can
    act on; the SDK's own warnings still show."""
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
    warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)


def load_ipython_extension(shell: InteractiveShell) -> None:
    apply_gpu_share()
    quiet_library_warnings()
    memory_limit.register(shell)
    namespace = {"openledger_sdk": openledger_sdk}
    try:
        namespace["ol"] = openledger_sdk.connect()
    except openledger_sdk.NotConnectedError as err:
        print(f"OpenLedger: {err}")
    shell.push(namespace)
    shell.register_magics(OpenLedgerMagics)
