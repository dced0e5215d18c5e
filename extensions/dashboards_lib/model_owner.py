"""The model owner dashboard: my published models, their requests and revenue per day, their top contributors."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any
from urllib.parse import quote

import ipywidgets as widgets
from matplotlib.figure import Figure

from extensions.dashboards_lib.common import (
    Dashboard,
    StatusLine,
    address_cell,
    esc,
    finish_chart,
    guarded,
    html_table,
    message,
    open_amount,
    open_value,
    section,
    show_figure,
    when,
)
from openledger_sdk.client import Client

PERIODS = [("last 7 days", 7), ("last 30 days", 30), ("last 90 days", 90), ("last year", 366)]
TOP_CONTRIBUTORS = 10
TOTALS = [  # (key in the revenue totals, label)
    ("owner", "your share"),
    ("fees", "fees paid"),
    ("contributors", "to data contributors"),
    ("protocol", "to the protocol"),
    ("unpaid", "unpaid (payer could not pay)"),
]


def combine(reports: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """One revenue report (per day, totals, top contributors) from the reports of several models."""
    per_day: dict[str, dict[str, int]] = {}
    totals: dict[str, int] = {}
    contributors: dict[str, int] = {}
    for report in reports:
        for day in report["per_day"]:
            merged = per_day.setdefault(day["date"], {"requests": 0, "fees": 0, "owner": 0})
            merged["requests"] += int(day["requests"])
            merged["fees"] += int(day["fees"])
            merged["owner"] += int(day.get("owner", 0))
        for key, value in report["totals"].items():
            totals[key] = totals.get(key, 0) + int(value)
        for part in report["top_contributors"]:
            contributors[part["address"]] = contributors.get(part["address"], 0) + int(part["amount"])
    top = sorted(contributors.items(), key=lambda item: (-item[1], item[0]))[:TOP_CONTRIBUTORS]
    return {"per_day": per_day, "totals": totals, "top_contributors": top}


def revenue_figure(per_day: dict[str, dict[str, int]]) -> Figure | None:
    """Bars: requests per day; line: my share of the fees per day (OPEN). None without any request."""
    if not per_day:
        return None
    days = sorted(per_day)
    dates = [date.fromisoformat(day) for day in days]
    figure = Figure(figsize=(7.5, 3.2))
    axes = figure.subplots()
    axes.bar(dates, [per_day[day]["requests"] for day in days], color="#93c5fd", label="requests")
    axes.set_ylabel("requests per day")
    revenue = axes.twinx()
    revenue.plot(dates, [open_value(per_day[day]["owner"]) for day in days], color="#047857", marker="o")
    revenue.set_ylabel("your revenue (OPEN)")
    revenue.lines[0].set_label("your revenue")
    figure.autofmt_xdate()
    return finish_chart(figure, axes, revenue, "Requests and revenue per day")


class ModelOwnerDashboard(Dashboard):
    title = "My models"

    def __init__(self, client: Client | None = None) -> None:
        super().__init__(client)
        self.models: list[dict[str, Any]] = []
        self.models_status = StatusLine()
        self.models_table = widgets.HTML()
        self.model_choice = widgets.Dropdown(description="Model", options=[("all my models", "")])
        self.period = widgets.Dropdown(description="Period", options=PERIODS, value=30)
        self.revenue_status = StatusLine()
        self.totals = widgets.HTML()
        self.revenue_plot = widgets.Output()
        self.contributors_table = widgets.HTML()
        self._filling = False  # True while the model list is refilled: its value changes are not the user's
        for control in (self.model_choice, self.period):
            control.observe(lambda _change: None if self._filling else self._load_revenue(), names="value")

    def sections(self) -> list[widgets.Widget]:
        return [
            section("Published models"),
            self.models_status,
            self.models_table,
            section("Requests and revenue"),
            widgets.HBox([self.model_choice, self.period]),
            self.revenue_status,
            self.totals,
            self.revenue_plot,
            section("Top contributors"),
            widgets.HTML(
                '<p class="ol-empty">The data contributors whose rows the attribution credited most for your '
                "models' answers in this period.</p>"
            ),
            self.contributors_table,
        ]

    def load(self) -> None:
        self._load_models()
        self._load_revenue()

    @guarded(lambda self: self.models_status, "load your models")
    def _load_models(self) -> None:
        self.models_status.clear()
        self.models = self.client.models.list(mine=True)
        self.models_table.value = html_table(
            ["Model", "Base model", "Price per 1k tokens", "LoRA rank", "Trained on", "On chain", "Published"],
            (
                [
                    model["name"],
                    (model.get("base_model") or {}).get("name"),
                    f"{model.get('price_per_1k_tokens')} OPEN",
                    model.get("lora_rank"),
                    ", ".join(f"{d['name']} v{d['version']}" for d in model.get("datanets") or []) or "-",
                    (model.get("chain") or {}).get("status", "-"),
                    when(model.get("created_at")),
                ]
                for model in self.models
            ),
            "You have not published a model yet. Fine-tune one on a datanet (notebook 03-finetune-lora) and "
            "publish it: its requests, revenue and top contributors show up here.",
        )
        chosen = self.model_choice.value
        names = [model["name"] for model in self.models]
        self._filling = True
        try:
            self.model_choice.options = [("all my models", ""), *[(name, name) for name in names]]
            self.model_choice.value = chosen if chosen in names else ""
        finally:
            self._filling = False

    @guarded(lambda self: self.revenue_status, "load the revenue of your models")
    def _load_revenue(self) -> None:
        self.revenue_status.clear()
        names = [self.model_choice.value] if self.model_choice.value else [model["name"] for model in self.models]
        if not names:
            self.totals.value = message("info", "No models yet, so no requests or revenue.")
            self.revenue_plot.clear_output()
            self.contributors_table.value = html_table([], [], "No contributors yet.")
            return
        days = self.period.value
        report = combine(
            self.client.request("GET", "platform", f"api/models/{quote(name, safe='')}/revenue", params={"days": days})
            for name in names
        )
        totals = report["totals"]
        requests = totals.get("requests", 0)
        if not requests:
            self.totals.value = message("info", f"No requests in the {period_label(days)}.")
        else:
            split = ", ".join(f"{label} {open_amount(totals.get(key, 0))}" for key, label in TOTALS)
            text = f"{requests:,} requests, {totals.get('tokens', 0):,} tokens in the {period_label(days)}: {split}."
            self.totals.value = f"<p>{esc(text)}</p>"
        figure = revenue_figure(report["per_day"])
        if figure is None:
            self.revenue_plot.clear_output()
        else:
            show_figure(self.revenue_plot, figure)
        paid = totals.get("contributors", 0) or 1
        self.contributors_table.value = html_table(
            ["Contributor address", "Earned from your models", "Share of all contributor payouts"],
            (
                [address_cell(address), open_amount(amount), f"{100 * amount / paid:.1f}%"]
                for address, amount in report["top_contributors"]
            ),
            "No contributor was credited in this period.",
        )


def period_label(days: int) -> str:
    return next((label for label, value in PERIODS if value == days), f"last {days} days")
