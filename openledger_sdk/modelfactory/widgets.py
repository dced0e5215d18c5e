"""The ModelFactory panel (ipywidgets 8): pick data and base model, set hyperparameters, Train / Stop with a live
loss chart and progress bar, see eval results, chat with the model, and Publish.

    from openledger_sdk.modelfactory import FinetunePanel
    FinetunePanel(ol)                 # datanets and versions from the platform
    FinetunePanel(rows=my_dataset)    # or an in-memory datasets.Dataset / list of dicts (no hub needed)

Training runs in a background thread, so the kernel stays free; the thread updates the widgets (ipykernel sends
the updates), which works the same in JupyterLab, Notebook and Voila. The chart is a PNG rendered with
matplotlib's Agg canvas (no pyplot state, no Lab-only renderer) into an `Image` widget.
"""

from __future__ import annotations

import html
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import ipywidgets as w

from openledger_sdk.catalog import CATALOG, DEFAULT_BASE_MODEL, resolve_base_model
from openledger_sdk.errors import OpenLedgerError
from openledger_sdk.modelfactory.config import DEFAULT_TARGETS, IndexSettings, LoraSettings, TrainConfig
from openledger_sdk.modelfactory.config import validation_problems as config_problems
from openledger_sdk.modelfactory.panel_chart import render_loss_chart
from openledger_sdk.modelfactory.panel_progress import PanelCallback, duration_text, eval_table
from openledger_sdk.modelfactory.panel_publish import follow_registration, published_html
from openledger_sdk.modelfactory.panel_settings import (
    FALLBACK_TARGETS,
    NO_STEP_CAP,
    TRAIN_FIELDS,
    default_settings,
    linear_layer_names,
    train_fields,
)

IN_MEMORY = "(rows given to the panel)"


class FinetunePanel:
    """Widget panel around `finetune()`; display it as the last expression of a cell (or `display(panel)`)."""

    def __init__(
        self,
        client: Any = None,
        rows: Any = None,
        *,
        base: str = DEFAULT_BASE_MODEL,
        base_models: list[str] | None = None,
        models_dir: str | Path | None = None,
        output_root: str | Path | None = None,
        defaults: dict[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.rows = rows
        self.models_dir = Path(models_dir) if models_dir else None
        self.output_root = Path(output_root) if output_root else None
        self.model: Any = None  # the last TrainedModel
        self.loss_points: list[tuple[int, float]] = []
        self.last_error: BaseException | None = None
        self.last_record: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._running = False  # set by the button, cleared by the training thread before it re-enables Train
        self._chat_thread: threading.Thread | None = None
        self._publish_thread: threading.Thread | None = None
        self._datanets: dict[str, Any] = {}
        settings = default_settings(defaults)
        style = {"description_width": "110px"}
        layout = w.Layout(width="260px")

        # Data and base model.
        self.datanet = w.Dropdown(description="Datanet", style=style, layout=w.Layout(width="340px"))
        self.version = w.Dropdown(description="Version", style=style, layout=layout)
        self.base = w.Combobox(
            value=base,
            options=sorted({*CATALOG, *(base_models or []), base}),
            ensure_option=False,
            description="Base model",
            style=style,
            layout=w.Layout(width="340px"),
        )
        # Hyperparameters.
        self.controls: dict[str, w.ValueWidget] = {
            "r": w.IntText(value=settings["r"], description="LoRA rank r", style=style, layout=layout),
            "alpha": w.FloatText(value=settings["alpha"], description="LoRA alpha", style=style, layout=layout),
            "dropout": w.FloatText(value=settings["dropout"], description="LoRA dropout", style=style, layout=layout),
            "lr": w.FloatText(value=settings["lr"], description="learning rate", style=style, layout=layout),
            "epochs": w.IntText(value=settings["epochs"], description="epochs", style=style, layout=layout),
            "max_steps": w.IntText(
                value=settings["max_steps"],
                description="max steps",
                tooltip="cap on optimizer steps; 0 trains every epoch in full",
                style=style,
                layout=layout,
            ),
            "batch_size": w.IntText(value=settings["batch_size"], description="batch size", style=style, layout=layout),
            "grad_accum": w.IntText(value=settings["grad_accum"], description="grad accum", style=style, layout=layout),
            "max_len": w.IntText(value=settings["max_len"], description="max tokens", style=style, layout=layout),
            "seed": w.IntText(value=settings["seed"], description="seed", style=style, layout=layout),
            "eval_split": w.FloatText(
                value=settings["eval_split"], description="eval split", style=style, layout=layout
            ),
            "index_dim": w.IntText(value=settings["index_dim"], description="index dim", style=style, layout=layout),
        }
        self.targets = w.SelectMultiple(
            description="target modules", rows=7, style=style, layout=w.Layout(width="340px")
        )
        self.problems = w.HTML()
        # Training.
        self.train_button = w.Button(description="Train", button_style="primary", icon="play")
        self.stop_button = w.Button(description="Stop", button_style="warning", icon="stop", disabled=True)
        self.progress = w.IntProgress(value=0, min=0, max=1, description="0/0", layout=w.Layout(width="420px"))
        self.eta = w.Label("")
        self.status = w.HTML("<i>set up the run, then press Train</i>")
        self.chart = w.Image(value=render_loss_chart([]), format="png", layout=w.Layout(width="500px"))
        self.eval_html = w.HTML()
        # Chat.
        self.chat_input = w.Text(placeholder="ask the fine-tuned model…", layout=w.Layout(width="420px"), disabled=True)
        self.chat_button = w.Button(description="Send", icon="comment", disabled=True)
        self.chat_log = w.HTML()
        # Publish.
        self.publish_name = w.Text(description="model name", style=style, layout=w.Layout(width="340px"))
        # The same default as notebook 03 teaches (the owner sets it here before publishing).
        self.publish_price = w.FloatText(value=0.5, description="OPEN / 1k tok", style=style, layout=layout)
        self.publish_button = w.Button(description="Publish", button_style="success", icon="upload", disabled=True)
        self.publish_result = w.HTML()

        self._fill_datanets()
        self._fill_targets(settings["target_modules"])
        self.datanet.observe(self._on_datanet, names="value")
        self.base.observe(lambda _change: self._fill_targets(self.targets.value), names="value")
        for control in [*self.controls.values(), self.targets, self.version]:
            control.observe(lambda _change: self.validate(), names="value")
        self.train_button.on_click(self._on_train)
        self.stop_button.on_click(self._on_stop)
        self.chat_button.on_click(self._on_chat)
        self.publish_button.on_click(self._on_publish)
        self.validate()
        grid = list(self.controls.values())
        self.widget = w.VBox(
            [
                w.HTML("<h3>ModelFactory: LoRA fine-tuning</h3>"),
                w.HBox(
                    [w.VBox([self.datanet, self.version, self.base, self.targets]), w.VBox(grid[:6]), w.VBox(grid[6:])]
                ),  # fmt: skip
                self.problems,
                w.HBox([self.train_button, self.stop_button, self.progress, self.eta]),
                self.status,
                self.chart,
                self.eval_html,
                w.HTML("<b>Test chat</b>"),
                w.HBox([self.chat_input, self.chat_button]),
                self.chat_log,
                w.HTML("<b>Publish</b>"),
                w.HBox([self.publish_name, self.publish_price, self.publish_button]),
                self.publish_result,
            ]
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # --- choices -----------------------------------------------------------------------------------------------------

    def _fill_datanets(self) -> None:
        options: list[str] = [IN_MEMORY] if self.rows is not None else []
        if self.client is not None:
            try:
                self._datanets = {dn.name: dn for dn in self.client.datanets.list()}
            except OpenLedgerError as err:
                self._status(f"could not list datanets: {err}", error=True)
            options += sorted(self._datanets)
        self.datanet.options = options or ["(no data: pass rows= or connect to a hub)"]
        self.datanet.value = self.datanet.options[0]
        self._on_datanet(None)

    def _on_datanet(self, _change: Any) -> None:
        handle = self._datanets.get(self.datanet.value)
        if handle is None:
            self.version.options, self.version.disabled = ["-"], True
            self.version.value = "-"
        else:
            try:
                numbers = sorted((v["version"] for v in handle.versions()), reverse=True)
            except OpenLedgerError as err:
                numbers = []
                self._status(f"could not list versions of {handle.name}: {err}", error=True)
            self.version.options = numbers or ["(no published version)"]
            self.version.value = self.version.options[0]  # newest
            self.version.disabled = not numbers
        self.validate()

    def _fill_targets(self, wanted: Any) -> None:
        try:
            names = linear_layer_names(resolve_base_model(self.base.value, self.models_dir))
        except (OpenLedgerError, OSError):
            names = list(FALLBACK_TARGETS)
        self.targets.options = names
        self.targets.value = tuple(t for t in wanted if t in names) or tuple(t for t in DEFAULT_TARGETS if t in names)
        self.validate()

    # --- settings ----------------------------------------------------------------------------------------------------

    def config(self) -> TrainConfig:
        c = {name: control.value for name, control in self.controls.items()}
        return TrainConfig(
            base=self.base.value,
            lora=LoraSettings(r=c["r"], alpha=c["alpha"], dropout=c["dropout"], target_modules=self.targets.value),
            **{name: c[name] for name in TRAIN_FIELDS if name != "max_steps"},
            max_steps=None if c["max_steps"] == NO_STEP_CAP else c["max_steps"],
            index=IndexSettings(dim=c["index_dim"]),
        )

    def validate(self) -> list[str]:
        """Show every problem with the current settings; Train is enabled only when there are none."""
        problems = config_problems(self.config())
        source = self.datanet.value
        if source != IN_MEMORY and source not in self._datanets:
            problems.insert(0, "no training data: pass rows= to the panel, or connect to a hub with datanets")
        elif source in self._datanets and self.version.disabled:
            problems.insert(0, f"datanet {source} has no published version yet")
        if self.model is None or not self.model.complete:
            self.publish_button.disabled = True
        self.problems.value = (
            "<ul style='color:#b00020;margin:2px'>" + "".join(f"<li>{html.escape(p)}</li>" for p in problems) + "</ul>"
            if problems
            else ""
        )
        self.train_button.disabled = bool(problems) or self.training
        return problems

    @property
    def training(self) -> bool:
        return self._running

    def _status(self, text: str, *, error: bool = False) -> None:
        color = "#b00020" if error else "inherit"
        self.status.value = f"<span style='color:{color}'>{html.escape(text)}</span>"

    # --- actions -----------------------------------------------------------------------------------------------------

    def _finetune_kwargs(self) -> dict[str, Any]:
        config = self.config()
        kwargs: dict[str, Any] = {
            "base": config.base,
            "lora": config.lora,
            **train_fields(config),
            "index": config.index,
            "models_dir": self.models_dir,
            "client": self.client,
            "progress": False,
        }
        if self.datanet.value == IN_MEMORY:
            kwargs["rows"] = self.rows
        else:
            kwargs["datanet"], kwargs["version"] = self._datanets[self.datanet.value], self.version.value
        if self.output_root is not None:
            from openledger_sdk.modelfactory.trainer import default_output_dir

            label = "rows" if self.datanet.value == IN_MEMORY else str(self.datanet.value)
            kwargs["output_dir"] = self.output_root / default_output_dir(label).name
        return kwargs

    def _on_train(self, _button: Any = None) -> None:
        if self.training or self.validate():
            return
        self._stop.clear()
        self.loss_points = []
        self.model, self.last_error = None, None
        self.chart.value = render_loss_chart([])
        # A fresh label at once: the last run's "4/4" would otherwise show until the model has loaded.
        self.progress.value, self.progress.bar_style, self.progress.description = 0, "", "starting"
        self.eta.value = ""
        self.eval_html.value = self.publish_result.value = ""
        for widget in (self.publish_button, self.chat_button, self.chat_input, self.train_button):
            widget.disabled = True
        self.stop_button.disabled = False
        self._running = True
        self._thread = threading.Thread(target=self._run, args=(self._finetune_kwargs(),), daemon=True)
        self._thread.start()

    def _run(self, kwargs: dict[str, Any]) -> None:
        from openledger_sdk.modelfactory.trainer import finetune

        started = time.monotonic()
        try:
            model = finetune(**kwargs, callbacks=[PanelCallback(self)], stop=self._stop)
            self.model = model
            self.chart.value = render_loss_chart(self.loss_points, model.metrics["total_steps"])
            self.eval_html.value = eval_table(model)
            self.chat_button.disabled = self.chat_input.disabled = False
            self.eta.value = f"took {duration_text(time.monotonic() - started)}"
            if model.complete:
                self.progress.bar_style = "success"
                self._status(f"done: {model.path}")
                from_datanet = any(source.get("root") for source in model.manifest.get("datanets", []))
                self.publish_button.disabled = self.client is None or not from_datanet
                if self.client is None:
                    self.publish_result.value = "<i>connect to a hub (pass client=ol) to publish</i>"
                elif not from_datanet:
                    self.publish_result.value = (
                        "<i>only models trained on a published datanet version can be published</i>"
                    )
            else:
                self.progress.bar_style = "warning"
                self._status(f"{model.manifest['stop_reason']}: the partial adapter is saved in {model.path} and "
                             "marked incomplete (it cannot be published)")  # fmt: skip
        except Exception as err:  # shown in the panel: a thread's exception would otherwise vanish
            self.last_error = err
            self.progress.bar_style = "danger"
            if isinstance(err, OpenLedgerError):
                self._status(str(err), error=True)
            else:
                self._status(f"training failed: {err.__class__.__name__}: {err}", error=True)
                traceback.print_exc()
        finally:
            self._running = False
            self.stop_button.disabled = True
            self.validate()

    def _on_stop(self, _button: Any = None) -> None:
        self._stop.set()
        self.stop_button.disabled = True
        self._status("stopping after the current batch…")

    def _on_chat(self, _button: Any = None) -> None:
        prompt = self.chat_input.value.strip()
        if not prompt or self.model is None:
            return
        self.chat_button.disabled = True

        def answer() -> None:
            try:
                reply = self.model.generate(prompt, max_new_tokens=64)
            except Exception as err:  # shown in the chat log
                reply = f"[error: {err}]"
            self.chat_log.value += f"<div><b>you:</b> {html.escape(prompt)}<br><b>model:</b> {html.escape(reply)}</div>"
            self.chat_input.value = ""
            self.chat_button.disabled = False

        self._chat_thread = threading.Thread(target=answer, daemon=True)
        self._chat_thread.start()

    def _on_publish(self, _button: Any = None) -> None:
        from openledger_sdk.modelfactory.publish import publish

        self.publish_button.disabled = True  # one click, one model: a second would only meet "name taken"
        self.publish_result.value = "<i>uploading and registering…</i>"
        try:
            self.last_record = publish(self.client, self.model, self.publish_name.value, self.publish_price.value)
        except OpenLedgerError as err:
            self.publish_result.value = f"<span style='color:#b00020'>{html.escape(str(err))}</span>"
            self.publish_button.disabled = False  # e.g. a bad name: fix it and press again
            return
        self.publish_result.value = published_html(self.last_record, self.client)
        self._publish_thread = threading.Thread(target=self._follow_registration, daemon=True)
        self._publish_thread.start()

    def _follow_registration(self) -> None:
        """The on-chain registration is sent by the platform's relay a moment later: show its transaction then."""
        record = follow_registration(self.client, self.last_record or {})
        self.last_record = record
        self.publish_result.value = published_html(record, self.client)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until training (and any chat answer) finishes; True if it did within `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in (self._thread, self._chat_thread, self._publish_thread):
            if thread is not None:
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
                if thread.is_alive():
                    return False
        return True


__all__ = ["FinetunePanel", "linear_layer_names", "render_loss_chart"]
