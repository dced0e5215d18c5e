"""What every dashboard shares: the platform client, messages instead of tracebacks, HTML tables, amounts, plots.

Dashboards are for people who never write code: whatever goes wrong ends as one readable line in the page (the
platform's own explanation where there is one), and the full traceback goes to the server's log only.
"""

from __future__ import annotations

import html
import io
import logging
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from functools import wraps
from typing import Any, TypeVar

import ipywidgets as widgets
from IPython.display import Image, display

import openledger_sdk
from openledger_sdk import OpenLedgerError
from openledger_sdk.client import Client

WEI = Decimal(10**18)
T = TypeVar("T")

# The kernel's stderr would end up in the page (as a cell output) or be lost (in a button callback): log to the
# process's own stderr, which the single-user server writes to its log.
log = logging.getLogger("openledger.dashboards")
if not log.handlers:
    _handler = logging.StreamHandler(sys.__stderr__)
    _handler.setFormatter(logging.Formatter("[%(levelname)s %(asctime)s %(name)s] %(message)s"))
    log.addHandler(_handler)
    log.setLevel(logging.INFO)
    log.propagate = False

STYLE = """<style>
.ol-dash h2 { margin: 0.2em 0; }
.ol-dash h3 { margin: 0.9em 0 0.3em; border-bottom: 1px solid #ddd; }
.ol-table { border-collapse: collapse; font-size: 13px; }
.ol-table th { text-align: left; background: #f3f4f6; }
.ol-table th, .ol-table td { padding: 3px 10px; border-bottom: 1px solid #e5e7eb; vertical-align: top; }
.ol-empty { color: #6b7280; font-style: italic; }
.ol-msg { padding: 4px 8px; border-radius: 4px; margin: 2px 0; white-space: pre-wrap; }
.ol-msg-info { background: #eef2ff; color: #1e3a8a; }
.ol-msg-success { background: #ecfdf5; color: #065f46; }
.ol-msg-warning { background: #fffbeb; color: #92400e; }
.ol-msg-error { background: #fef2f2; color: #991b1b; }
.ol-badge { padding: 1px 6px; border-radius: 8px; font-size: 12px; }
.ol-status-approved { background: #d1fae5; color: #065f46; }
.ol-status-pending { background: #fef3c7; color: #92400e; }
.ol-status-rejected { background: #fee2e2; color: #991b1b; }
</style>"""

# The SDK's messages start with the request ("POST /services/platform/api/... → 422: "): useful in a notebook,
# noise for someone clicking a button.
_REQUEST_PREFIX = re.compile(r"^[A-Z]+ \S+ → \d{3}: ")


class Html(str):
    """Markup built here (escaped already): table cells of this type are inserted as they are."""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def cell(value: Any) -> str:
    return value if isinstance(value, Html) else esc(value)


def html_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], empty: str) -> str:
    """An HTML table with every cell escaped (platform data is user input), or `empty` in grey when no rows."""
    body = "".join("<tr>" + "".join(f"<td>{cell(value)}</td>" for value in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="ol-empty">{esc(empty)}</p>'
    head = "".join(f"<th>{esc(name)}</th>" for name in columns)
    return f'<table class="ol-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def badge(status: str) -> Html:
    return Html(f'<span class="ol-badge ol-status-{esc(status)}">{esc(status)}</span>')


def message(kind: str, text: str) -> str:
    """One message line: kind is info, success, warning or error."""
    return f'<div class="ol-msg ol-msg-{kind}">{esc(text)}</div>'


def friendly(err: BaseException) -> str:
    """What to tell the user about `err`: the platform's explanation, or a short generic line."""
    if isinstance(err, OpenLedgerError):
        text = _REQUEST_PREFIX.sub("", str(err).strip())
        if err.status == 503:
            return f"The platform is not ready yet ({text}). Try again in a minute."
        if text == "Not Found":  # the route itself is missing, not a thing you named
            return "this platform does not offer it (yet)."
        return text
    return f"Something went wrong ({type(err).__name__}). Try Refresh; if it keeps happening, tell an admin."


def open_amount(wei: int | str | Decimal) -> str:
    """Base units (18 decimals) as OPEN, to 6 decimals without trailing zeros: '1.25 OPEN'."""
    value = Decimal(wei) / WEI
    if 0 < value < Decimal("0.000001"):
        return "< 0.000001 OPEN"
    text = f"{value:,.6f}".rstrip("0").rstrip(".")
    return f"{text} OPEN"


def open_value(wei: int | str | Decimal) -> float:
    """Base units as a float number of OPEN, for plotting only (never for amounts shown as text)."""
    return float(Decimal(wei) / WEI)


def short_address(address: str | None) -> str:
    return f"{address[:6]}…{address[-4:]}" if address and len(address) > 12 else (address or "-")


def address_cell(address: str) -> Html:
    """A shortened address; the full one shows on hover."""
    return Html(f'<code title="{esc(address)}">{esc(short_address(address))}</code>')


def when(iso: str | None) -> str:
    """An ISO timestamp as 'YYYY-MM-DD HH:MM' (UTC, as the platform stores it)."""
    if not iso:
        return "-"
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


def show_figure(output: widgets.Output, figure: Any) -> None:
    """Render a matplotlib Figure as a PNG into `output` (no pyplot state, so nothing leaks between plots)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    output.clear_output(wait=True)
    with output:
        display(Image(data=buffer.getvalue(), format="png"))


def finish_chart(figure: Any, axes: Any, twin: Any, title: str) -> Any:
    """The dashboards' charts (bars on `axes`, a line on its `twin` axis) end alike: the line's axis starts at 0, one
    legend for both axes under the plot, the title on top. Returns `figure`."""
    twin.set_ylim(bottom=0)
    handles = axes.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    figure.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0), ncols=3, fontsize=8, frameon=False)
    figure.suptitle(title, fontsize=11)
    return figure


class StatusLine(widgets.HTML):
    """A one-line message area: `.show("success", "...")`, `.clear()`."""

    def show(self, kind: str, text: str) -> None:
        self.value = message(kind, text)

    def clear(self) -> None:
        self.value = ""


def guarded(status: Callable[[Any], StatusLine], what: str) -> Callable[[Callable[..., T]], Callable[..., T | None]]:
    """Decorate a dashboard method: any error becomes a message in `status(self)`, the traceback goes to the log."""

    def decorate(method: Callable[..., T]) -> Callable[..., T | None]:
        @wraps(method)
        def run(self: Any, *args: Any, **kwargs: Any) -> T | None:
            try:
                return method(self, *args, **kwargs)
            except Exception as err:  # noqa: BLE001 - a dashboard shows every failure as a message
                log.warning("%s failed: %s", what, err, exc_info=not isinstance(err, OpenLedgerError))
                status(self).show("error", f"Could not {what}: {friendly(err)}")
                return None

        return run

    return decorate


def section(title: str) -> widgets.HTML:
    return widgets.HTML(f"<h3>{esc(title)}</h3>")


class Dashboard:
    """A page: a header (who you are, your wallet), a Refresh button, a status line, then the page's sections."""

    title = "OpenLedger"

    def __init__(self, client: Client | None = None) -> None:
        self.client = client
        self.status = StatusLine()
        self.who = widgets.HTML()
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh", tooltip="Load everything again")
        self.refresh_button.on_click(lambda _button: self.refresh())
        self.user: dict[str, Any] = {}
        self.wallet: dict[str, Any] = {}

    def sections(self) -> list[widgets.Widget]:
        raise NotImplementedError

    def load(self) -> None:
        """Load every section (each one shows its own errors)."""
        raise NotImplementedError

    @property
    def widget(self) -> widgets.VBox:
        if not hasattr(self, "_widget"):
            header = widgets.HTML(f'{STYLE}<div class="ol-dash"><h2>{esc(self.title)}</h2></div>')
            top = widgets.HBox([self.who, self.refresh_button], layout=widgets.Layout(align_items="center"))
            self._widget = widgets.VBox([header, top, self.status, *self.sections()], layout={"padding": "0 12px"})
            self._widget.add_class("ol-dash")
        return self._widget

    def show(self) -> None:
        """Display the page and fill it."""
        display(self.widget)
        self.refresh()

    def refresh(self) -> None:
        self.status.clear()
        self.refresh_button.disabled = True
        try:
            if self._connect() and self._load_identity():
                self.load()
        finally:
            self.refresh_button.disabled = False

    def _connect(self) -> bool:
        if self.client is None:
            try:
                self.client = openledger_sdk.connect()
            except OpenLedgerError as err:
                self.status.show("error", f"Not connected to the platform: {friendly(err)}")
                return False
        return True

    @guarded(lambda self: self.status, "load your account")
    def _load_identity(self) -> bool:
        assert self.client is not None
        self.user = self.client.whoami()
        self._load_wallet()
        return True

    def _load_wallet(self) -> None:
        """The header line; without a wallet (chain still starting) the page still loads what it can."""
        assert self.client is not None
        parts = [f"Signed in as <b>{esc(self.user['name'])}</b>"]
        try:
            self.wallet = self.client.wallet.info()  # creates the custodial wallet on first use
        except OpenLedgerError as err:
            self.wallet = {}
            parts.append(esc(f"wallet unavailable: {friendly(err)}"))
        else:
            address = self.wallet["address"]
            parts.append(f"wallet {address_cell(address)}")
            balances = self.wallet.get("balances")
            parts.append(f"balance {esc(open_amount(balances['OPEN']))}" if balances else "balance unavailable")
            if self.wallet.get("payout_address"):
                parts.append(f"rewards go to your linked address {address_cell(self.wallet['payout_address'])}")
        self.who.value = " · ".join(parts)
