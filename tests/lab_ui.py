"""Driving JupyterLab 4 the way a person does: open a notebook, Run ▸ Run All Cells, wait, read what it printed."""

from __future__ import annotations

import contextlib
import re
import time

from playwright.sync_api import Page
from playwright.sync_api import TimeoutError as PlaywrightTimeout

ERROR_MIME = "application/vnd.jupyter.error"
MAIN_TAB = "#jp-main-dock-panel .lm-TabBar-tab"  # a document's tab (not the side bars' tabs)
# Prompt texts of every code cell in the open notebook ("[3]:", "[*]:", "[ ]:").
PROMPTS_JS = """() => Array.from(document.querySelectorAll(
  '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt')).map(e => e.textContent.trim())"""


class NotebookFailed(AssertionError):
    """A cell raised, or the notebook did not finish in time; the message has the error text."""


def open_notebook(page: Page, name: str, timeout_ms: int = 120_000) -> None:
    """Open `name` from the file browser (double-click, as a person does) and wait until its kernel is idle."""
    listing = page.locator(".jp-DirListing-item", has_text=name).first
    if not listing.is_visible():
        page.locator(".jp-SideBar [data-id='filebrowser']").first.click()  # the left panel was closed
    listing.dblclick()
    page.locator(f"{MAIN_TAB}.lm-mod-current", has_text=name).first.wait_for(timeout=timeout_ms)
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    panel.locator(".jp-CodeCell").first.wait_for(timeout=timeout_ms)
    select = page.locator(".jp-Dialog button", has_text="Select")
    with contextlib.suppress(PlaywrightTimeout):  # JupyterLab may ask once; its preselected kernel is ours
        select.click(timeout=3_000)
    panel.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(timeout=timeout_ms)


def wait_kernel_idle(page: Page, timeout_ms: int) -> None:
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(timeout=timeout_ms)


def menu(page: Page, top: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=top).first.click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(rf"^{re.escape(item)}$")).first.click()


def run_all(page: Page, timeout_s: float) -> str:
    """Run ▸ Run All Cells, wait until every code cell ran (or one failed); return the outputs' text."""
    page.locator(f"{MAIN_TAB}.lm-mod-current").first.click()  # the notebook is the current widget
    menu(page, "Run", "Run All Cells")
    deadline, started = time.monotonic() + timeout_s, time.monotonic()
    while True:
        prompts = page.evaluate(PROMPTS_JS)
        errors = page.locator(f".jp-NotebookPanel:not(.lm-mod-hidden) [data-mime-type='{ERROR_MIME}']")
        if errors.count():
            raise NotebookFailed(errors.first.inner_text())
        if prompts and all(p.startswith("[") and p[1:-2].isdigit() for p in prompts):
            return outputs_text(page)
        if all(p == "[ ]:" for p in prompts) and time.monotonic() - started > 20:
            # Nothing started: the app was still wiring its commands when the menu was used. Use it again.
            page.locator(f"{MAIN_TAB}.lm-mod-current").first.click()
            menu(page, "Run", "Run All Cells")
            started = time.monotonic()
        if time.monotonic() > deadline:
            raise NotebookFailed(f"not finished after {timeout_s:.0f} s: prompts {prompts}")
        time.sleep(0.5)


def outputs_text(page: Page) -> str:
    outputs = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output")
    return "\n".join(outputs.all_inner_texts())
