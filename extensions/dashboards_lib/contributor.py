"""The contributor dashboard: my rewards (claim, earnings per epoch), upload a file to a datanet, my submissions
with their review status, my datanets."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import ipywidgets as widgets
from matplotlib.figure import Figure

from extensions.dashboards_lib.common import (
    Dashboard,
    StatusLine,
    badge,
    esc,
    finish_chart,
    friendly,
    guarded,
    html_table,
    log,
    message,
    open_amount,
    open_value,
    section,
    show_figure,
    when,
)
from extensions.dashboards_lib.governance_panel import ProposalsPanel
from openledger_sdk.client import Client
from openledger_sdk.datanets import ContributionRejected, Datanet

# The browser's file picker offers these; the platform decides what it accepts and says why not.
ACCEPT = ".jsonl,.ndjson,.json,.csv,.parquet,.txt,.md,.markdown"
REJECTIONS_SHOWN = 50
MAX_TICKS = 12


def earnings_figure(credits: Sequence[dict[str, Any]], closed: dict[int, str]) -> Figure | None:
    """Bars: what each epoch credited me (as contributor / as model owner); line: the running total. None if empty."""
    per_epoch: dict[int, list[Decimal]] = {}
    for credit in credits:
        contributor, owner = per_epoch.setdefault(int(credit["epoch"]), [Decimal(0), Decimal(0)])
        per_epoch[int(credit["epoch"])] = [
            contributor + Decimal(credit["as_contributor"]),
            owner + Decimal(credit["as_owner"]),
        ]
    if not per_epoch:
        return None
    epochs = sorted(per_epoch)
    labels = [f"#{epoch}\n{closed.get(epoch, '')[:10]}" for epoch in epochs]
    as_contributor = [open_value(per_epoch[epoch][0]) for epoch in epochs]
    as_owner = [open_value(per_epoch[epoch][1]) for epoch in epochs]
    running, total = [], 0.0
    for contributor, owner in zip(as_contributor, as_owner, strict=True):
        total += contributor + owner
        running.append(total)

    figure = Figure(figsize=(7.5, 3.2))
    axes = figure.subplots()
    positions = range(len(epochs))
    axes.bar(positions, as_contributor, color="#4f46e5", label="as data contributor")
    axes.bar(positions, as_owner, bottom=as_contributor, color="#10b981", label="as model owner")
    step = -(-len(epochs) // MAX_TICKS)  # label every step-th epoch: labels stay readable after many epochs
    axes.set_xticks(list(positions)[::step], labels[::step], fontsize=8)
    axes.set_ylabel("OPEN per epoch")
    cumulative = axes.twinx()
    cumulative.plot(list(positions), running, color="#111827", marker="o", label="total earned")
    cumulative.set_ylabel("OPEN in total")
    return finish_chart(figure, axes, cumulative, "My attribution earnings per settled epoch")


class ContributorDashboard(Dashboard):
    title = "My contributions and rewards"

    def __init__(self, client: Client | None = None) -> None:
        super().__init__(client)
        self.datanets: list[Datanet] = []
        # Rewards.
        self.rewards_status = StatusLine()
        self.claimable = widgets.HTML()
        self.claim_button = widgets.Button(description="Claim", icon="download", button_style="success")
        self.claim_button.on_click(lambda _button: self.claim())
        self.claim_status = StatusLine()
        self.earned = widgets.HTML()
        self.earnings_plot = widgets.Output()
        # Upload.
        self.target = widgets.Dropdown(description="Datanet", options=[], layout={"width": "420px"})
        self.upload = widgets.FileUpload(accept=ACCEPT, multiple=False, description="Choose file")
        self.contribute_button = widgets.Button(description="Contribute", icon="upload", button_style="primary")
        self.contribute_button.on_click(lambda _button: self.contribute())
        self.progress = widgets.IntProgress(value=0, min=0, max=2)  # chosen, sending, checked by the platform
        self.progress_label = widgets.Label()
        self.upload_output = widgets.Output()  # the SDK's byte-level progress bar while the file is sent
        self.upload_status = StatusLine()  # the verdict, with the table of rejected lines
        self.upload.observe(lambda _change: self._upload_ready(), names="value")
        self.target.observe(lambda _change: self._upload_ready(), names="value")
        self._step(0, "Choose a file, then press Contribute")
        # Lists.
        self.submissions_status = StatusLine()
        self.submissions_table = widgets.HTML()
        self.datanets_table = widgets.HTML()
        self.governance = ProposalsPanel(lambda: self.client)  # its own module (governance_panel.py)

    def sections(self) -> list[widgets.Widget]:
        return [
            section("Rewards"),
            self.rewards_status,
            widgets.HBox([self.claimable, self.claim_button], layout={"align_items": "center"}),
            self.claim_status,
            self.earned,
            self.earnings_plot,
            section("Contribute data"),
            widgets.HTML(
                '<p class="ol-empty">A file of rows (JSONL, JSON, CSV, Parquet, or text / Markdown for free-text '
                "datanets). Every row is checked against the datanet's schema and for duplicates: the whole file is "
                "accepted, or nothing is stored and each bad line is listed.</p>"
            ),
            widgets.HBox([self.target, self.upload, self.contribute_button]),
            widgets.HBox([self.progress, self.progress_label]),
            self.upload_output,
            self.upload_status,
            section("My submissions"),
            self.submissions_status,
            self.submissions_table,
            section("My datanets"),
            self.datanets_table,
            *self.governance.sections(),
        ]

    def load(self) -> None:
        self._load_rewards()
        self._load_datanets()
        self._upload_ready()
        self.governance.load()

    # Rewards ----------------------------------------------------------------------------------------------------
    @guarded(lambda self: self.rewards_status, "load your rewards")
    def _load_rewards(self) -> None:
        self.rewards_status.clear()
        pending = self.client.rewards.pending()
        if pending.claimable_wei:
            self.claimable.value = f"<b>{esc(open_amount(pending.claimable_wei))}</b> claimable now&nbsp;"
        else:
            self.claimable.value = "Nothing to claim right now&nbsp;"
        self.claim_button.disabled = not pending.claimable_wei
        credits = pending.epochs
        waiting = sum(int(credit["amount"]) for credit in credits if not credit["in_root"])
        total = sum(int(credit["amount"]) for credit in credits)
        if not credits:
            self.earned.value = message(
                "info",
                "No rewards yet. When a model trained on your data answers a request, your share of its fee is "
                "credited here once the epoch settles.",
            )
            self.earnings_plot.clear_output()
            return
        epochs = len({credit["epoch"] for credit in credits})
        text = f"Earned so far: {open_amount(total)} over {epochs} epoch{'s' if epochs != 1 else ''}."
        if waiting:
            text += f" {open_amount(waiting)} of it becomes claimable when its epoch is settled on chain."
        self.earned.value = f"<p>{esc(text)}</p>"
        epochs_closed = self.client.request("GET", "platform", "api/rewards/epochs", params={"limit": 500})
        figure = earnings_figure(credits, {int(e["epoch"]): e.get("closed_at") or "" for e in epochs_closed})
        if figure is not None:
            show_figure(self.earnings_plot, figure)

    @guarded(lambda self: self.claim_status, "claim your rewards")
    def claim(self) -> None:
        self.claim_button.disabled = True
        self.claim_status.show("info", "Claiming: the platform sends the transaction (it pays the gas) …")
        result = self.client.rewards.claim()
        statuses = {str(claim["status"]) for claim in result.claims}
        if result.paid_wei:
            paid_to = ", ".join(claim["address"] for claim in result.claims if int(claim["amount"]))
            tx = next((claim["tx_hash"] for claim in result.claims if claim.get("tx_hash")), None)
            text = f"Claimed {open_amount(result.paid_wei)}, paid to {paid_to}"
            self.claim_status.show("success", text + (f" (transaction {tx})." if tx else "."))
        elif statuses <= {"nothing to claim"}:
            self.claim_status.show("info", "Nothing to claim: everything credited to you so far has been paid.")
        else:
            self.claim_status.show("warning", "Your claim is sent and waits for the chain: press Refresh in a minute.")
        self._load_wallet()
        self._load_rewards()

    # Upload -----------------------------------------------------------------------------------------------------
    def _upload_ready(self) -> None:
        chosen = self.upload.value
        self.contribute_button.disabled = not (chosen and self.target.value)
        if chosen:  # (emptied after a contribution: the outcome stays shown)
            self._step(0, f"{chosen[0]['name']} ({chosen[0]['size']:,} bytes) is ready to send")

    def _step(self, step: int, text: str, style: str = "info") -> None:
        self.progress.value = step
        self.progress.bar_style = style
        self.progress_label.value = text

    @guarded(lambda self: self.upload_status, "contribute the file")
    def contribute(self) -> None:
        if not self.upload.value or not self.target.value:
            self.upload_status.value = message("warning", "Choose a datanet and a file first.")
            return
        chosen = self.upload.value[0]
        # Only the file's own name (the platform checks it again): it picks the format.
        name = Path(str(chosen["name"]).replace("\\", "/")).name.replace("\x00", "") or "upload.jsonl"
        datanet = self.target.value
        self.contribute_button.disabled = True
        self.upload_status.value = ""
        self._step(1, f"Sending {name} to {datanet} …")
        failure: Exception | None = None
        submission: dict[str, Any] | None = None
        with tempfile.TemporaryDirectory(prefix="ol-upload-") as folder:
            path = Path(folder) / name
            path.write_bytes(bytes(chosen["content"]))
            self.upload_output.clear_output()
            with self.upload_output:
                # Errors must not leave this block: an Output widget would print their traceback into the page.
                try:
                    submission = self.client.datanets.get(datanet).contribute(path)
                except Exception as err:  # noqa: BLE001 - shown below as a message
                    failure = err
        self.upload_output.clear_output()
        if isinstance(failure, ContributionRejected):
            self._step(2, f"{name} was rejected: nothing was stored", "danger")
            self.upload_status.value = rejection_html(failure)
        elif failure is not None:
            self._step(0, f"{name} was not sent", "danger")
            log.warning("contribute %s to %s failed", name, datanet, exc_info=failure)
            self.upload_status.value = message("error", f"Could not contribute {name}: {friendly(failure)}")
        else:
            assert submission is not None
            self._step(2, f"{name} accepted", "success")
            self.upload_status.value = message("success", accepted_text(submission, name))
            self.upload.value = ()
            self._load_datanets()
        self.contribute_button.disabled = not self.upload.value

    # Lists ------------------------------------------------------------------------------------------------------
    @guarded(lambda self: self.submissions_status, "load your datanets and submissions")
    def _load_datanets(self) -> None:
        self.submissions_status.clear()
        self.datanets = self.client.datanets.list()
        mine = [datanet for datanet in self.datanets if datanet.info.get("your_role")]
        # Yours first, then the rest by name: any datanet you can see takes contributions.
        ordered = mine + [datanet for datanet in self.datanets if not datanet.info.get("your_role")]
        current = self.target.value
        self.target.options = [
            (f"{d.name} ({'yours' if d.owner == self.user.get('name') else d.owner})", d.name) for d in ordered
        ]
        names = [d.name for d in ordered]
        self.target.value = current if current in names else (names[0] if names else None)
        self.datanets_table.value = html_table(
            ["Datanet", "Your role", "Visibility", "Approval", "Latest version", "License", "Created"],
            (
                [
                    d.name,
                    d.info.get("your_role"),
                    d.info.get("visibility"),
                    d.info.get("approval"),
                    f"v{d.latest_version}" if d.latest_version else "not published yet",
                    d.info.get("license"),
                    when(d.info.get("created_at")),
                ]
                for d in mine
            ),
            "You have no datanet of your own yet; you can still contribute to any datanet listed above.",
        )
        submissions = [row for datanet in self.datanets for row in datanet.submissions(mine=True)]
        submissions.sort(key=lambda row: row.get("created_at") or "", reverse=True)
        self.submissions_table.value = html_table(
            ["Submitted", "Datanet", "#", "File", "Rows", "Status", "Reason"],
            (
                [
                    when(row.get("created_at")),
                    row["datanet"],
                    row["id"],
                    row.get("filename") or row.get("source"),
                    row.get("rows"),
                    badge(str(row["status"])),
                    row.get("reason") or "",
                ]
                for row in submissions
            ),
            "No submissions yet: contribute a file above.",
        )


def accepted_text(submission: dict[str, Any], name: str) -> str:
    status = str(submission.get("status"))
    after = {
        "pending": "it waits for the datanet's curators to approve it",
        "approved": "it is approved and goes into the next version",
    }.get(status, f"status: {status}")
    return (
        f"Accepted: {submission.get('rows')} row(s) from {name} are submission #{submission.get('id')} "
        f"to {submission.get('datanet')}; {after}."
    )


def rejection_html(err: ContributionRejected) -> str:
    """The platform's verdict and every bad line, as the owner of the file needs it to fix the file."""
    headline = friendly(err).splitlines()[0]
    rows = [[problem.get("line", "-"), problem.get("error", "")] for problem in err.errors[:REJECTIONS_SHOWN]]
    more = len(err.errors) - REJECTIONS_SHOWN
    table = html_table(["Line", "Problem"], rows, "The platform gave no line-level details.")
    tail = f'<p class="ol-empty">… and {more} more</p>' if more > 0 else ""
    return message("error", f"Rejected, nothing was stored: {headline}") + table + tail
