"""Dry-run a template notebook as every student: papermill, in the OpenLedger kernel, with each one's token."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hub.workshop.hub_api import HubAPI


@contextmanager
def acting_as(hub_url: str, token: str) -> Iterator[None]:
    """The kernel papermill starts inherits this env, so `openledger_sdk.connect()` acts as that student."""
    saved = {key: os.environ.get(key) for key in ("OPENLEDGER_HUB_URL", "OPENLEDGER_API_TOKEN")}
    os.environ.update(OPENLEDGER_HUB_URL=hub_url, OPENLEDGER_API_TOKEN=token)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def dry_run(
    api: HubAPI, users: list[str], notebook: Path, out_dir: Path, kernel: str = "openledger-python", timeout: int = 600
) -> dict[str, str | None]:
    """Run `notebook` once per user; return user → None (passed) or the error's last line."""
    import papermill

    declared = papermill.inspect_notebook(str(notebook))
    results: dict[str, str | None] = {}
    for user in users:
        token = api.new_token(user, note="workshop dry-run", expires_in=timeout + 60)
        parameters = {"expected_user": user} if "expected_user" in declared else {}
        target = out_dir / user / notebook.name
        target.parent.mkdir(parents=True, exist_ok=True)
        with acting_as(api.hub_url, token):
            try:
                papermill.execute_notebook(
                    str(notebook),
                    str(target),
                    parameters=parameters,
                    kernel_name=kernel,
                    progress_bar=False,
                    execution_timeout=timeout,
                    cwd=str(target.parent),  # notebooks that write files write them beside their output
                )
                results[user] = None
            except papermill.PapermillExecutionError as err:
                results[user] = f"{err.ename}: {err.evalue}"
    return results
