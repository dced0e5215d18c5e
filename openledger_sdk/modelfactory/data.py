"""Training rows → token ids and labels: chat-template formatting, response-only labels, seeded data order.

Rows are prompt/response pairs (also instruction/output, question/answer; an optional `system` field) or free
text (`text`). Chat rows are rendered with the tokenizer's chat template; the prompt part (everything up to and
including the assistant header) gets label -100 so the loss covers only the response. Prompt and response are
tokenized separately, exactly as at inference, where generation starts right after the prompt's tokens.
Row ids and contributors come from the datanet snapshot's `_row_id` / `_contributor` columns (or `row_id` /
`contributor`); they travel with each example into the attribution index.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from openledger_sdk.datanets import CanonicalError, data_fields, row_hash
from openledger_sdk.modelfactory.config import canonical_hash
from openledger_sdk.modelfactory.errors import FinetuneError

IGNORE = -100  # label value the loss skips (PyTorch / transformers convention)
CHAT_FIELDS: tuple[tuple[str, str], ...] = (("prompt", "response"), ("instruction", "output"), ("question", "answer"))
TEXT_FIELD = "text"
SYSTEM_FIELD = "system"
ROW_ID_COLUMNS = ("_row_id", "row_id")
CONTRIBUTOR_COLUMNS = ("_contributor", "contributor")
MAX_SKIPPED_SHARE = 0.5  # more rows than this losing their whole response to max_len is a settings error
# Used only when the tokenizer has no chat template of its own.
FALLBACK_TEMPLATE = "{system}### Prompt:\n{prompt}\n### Response:\n"


@dataclass
class Example:
    """One tokenized training row."""

    row_id: Any
    contributor: str
    input_ids: list[int]
    labels: list[int]  # IGNORE on prompt tokens
    response_ids: list[int]  # the labelled tokens (span evidence indexes these)

    @property
    def loss_tokens(self) -> int:
        return len(self.response_ids)


@dataclass
class PreparedData:
    format: str  # "chat" | "text"
    fields: tuple[str, ...]
    train: list[Example]
    eval: list[Example]
    skipped: list[Any] = field(default_factory=list)  # row ids whose response did not fit max_len
    rows_sha256: str = ""  # sha256 over the rows' keccak hashes (the same hashes datanets put in Merkle leaves)
    template: str = "chat_template"


# --- rows --------------------------------------------------------------------------------------------------------


def rows_from(data: Any) -> list[dict[str, Any]]:
    """A datasets.Dataset, pandas DataFrame or sequence of mappings → a list of plain dicts."""
    if data is None:
        return []
    module = type(data).__module__
    if module.startswith("datasets") and hasattr(data, "to_list"):
        return [dict(row) for row in data.to_list()]
    if module.startswith("pandas") and hasattr(data, "to_dict"):
        return [dict(row) for row in data.to_dict("records")]
    if isinstance(data, Mapping | str | bytes):
        raise FinetuneError("rows must be a datasets.Dataset, a pandas DataFrame or a list of dicts")
    rows = []
    for i, row in enumerate(data):
        if not isinstance(row, Mapping):
            raise FinetuneError(f"row {i} is a {type(row).__name__}, not a dict of fields")
        rows.append(dict(row))
    return rows


def detect_format(rows: Sequence[Mapping[str, Any]]) -> tuple[str, tuple[str, ...]]:
    """("chat", (prompt_field, response_field)) or ("text", ("text",)); error naming the columns otherwise."""
    columns = set(rows[0]) if rows else set()
    for prompt, response in CHAT_FIELDS:
        if prompt in columns and response in columns:
            return "chat", (prompt, response)
    if TEXT_FIELD in columns:
        return "text", (TEXT_FIELD,)
    shown = ", ".join(sorted(c for c in columns if not c.startswith("_"))) or "none"
    raise FinetuneError(
        f"cannot tell how to train on these rows (columns: {shown}): give prompt/response "
        "(or instruction/output, question/answer) columns for chat fine-tuning, or a text column"
    )


def _first(row: Mapping[str, Any], names: Sequence[str], default: Any) -> Any:
    for name in names:
        if row.get(name) is not None:
            return row[name]
    return default


def row_identity(row: Mapping[str, Any], position: int) -> tuple[Any, str]:
    row_id = _first(row, ROW_ID_COLUMNS, position)
    if hasattr(row_id, "item"):
        row_id = row_id.item()
    return row_id, str(_first(row, CONTRIBUTOR_COLUMNS, ""))


def rows_sha256(rows: Sequence[Mapping[str, Any]]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        try:
            digest.update(row_hash(data_fields(row)))
        except CanonicalError as err:
            raise FinetuneError(f"row {row_identity(row, 0)[0]!r} has a value with no JSON form: {err}") from None
    return digest.hexdigest()


# --- formatting and tokenization -------------------------------------------------------------------------------------


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> str:
    """The text the model sees before its answer (chat template with the generation prompt)."""
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
    system = "".join(m["content"] + "\n" for m in messages if m["role"] == "system")
    users = "\n".join(m["content"] for m in messages if m["role"] != "system")
    return FALLBACK_TEMPLATE.format(system=system, prompt=users)


def _chat_parts(tokenizer: Any, prompt: str, response: str, system: str | None) -> tuple[str, str]:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    prompt_text = render_prompt(tokenizer, messages)
    if not has_chat_template(tokenizer):
        return prompt_text, response
    full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": response}], tokenize=False)
    if full.startswith(prompt_text):
        return prompt_text, full[len(prompt_text) :]
    # Templates that render the assistant header differently with and without a reply: split at the reply.
    at = full.rfind(response)
    if at < 0:
        raise FinetuneError("the tokenizer's chat template drops the response text; cannot build labels")
    return full[:at], full[at:]


def tokenize_row(tokenizer: Any, row: Mapping[str, Any], fmt: str, fields: tuple[str, ...]) -> tuple[list, list]:
    """(prompt_ids, response_ids) for one row; free text is all response (plain LM loss)."""
    eos = tokenizer.eos_token_id
    if fmt == "text":
        text = row.get(fields[0])
        if not isinstance(text, str) or not text.strip():
            raise FinetuneError(f"row {row_identity(row, 0)[0]!r}: the {fields[0]!r} field is empty")
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
        prompt_ids, response_ids = ids[:1], ids[1:]  # the first token has nothing to be predicted from
    else:
        prompt, response = row.get(fields[0]), row.get(fields[1])
        for name, value in zip(fields, (prompt, response), strict=True):
            if not isinstance(value, str) or not value.strip():
                raise FinetuneError(f"row {row_identity(row, 0)[0]!r}: the {name!r} field is empty or not text")
        system = row.get(SYSTEM_FIELD) if isinstance(row.get(SYSTEM_FIELD), str) else None
        prompt_text, response_text = _chat_parts(tokenizer, prompt, response, system)
        prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
        response_ids = tokenizer(response_text, add_special_tokens=False)["input_ids"]
    if eos is not None and eos not in response_ids:
        response_ids = [*response_ids, eos]  # teach the model to stop where the example stops
    return list(prompt_ids), list(response_ids)


def prepare(
    rows: Sequence[Mapping[str, Any]], tokenizer: Any, *, max_len: int, eval_split: float, seed: int
) -> PreparedData:
    """Tokenize, truncate to `max_len`, check ids, and split off a seeded held-out set."""
    if not rows:
        raise FinetuneError("the training data has 0 rows: nothing to fine-tune on")
    fmt, fields = detect_format(rows)
    examples: list[Example] = []
    skipped: list[Any] = []
    seen: set[Any] = set()
    for position, row in enumerate(rows):
        row_id, contributor = row_identity(row, position)
        if row_id in seen:
            raise FinetuneError(f"row id {row_id!r} appears twice: row ids must be unique")
        seen.add(row_id)
        prompt_ids, response_ids = tokenize_row(tokenizer, row, fmt, fields)
        room = max_len - len(prompt_ids)
        if room < 1:
            skipped.append(row_id)
            continue
        response_ids = response_ids[:room]
        labels = [IGNORE] * len(prompt_ids) + response_ids
        examples.append(Example(row_id, contributor, prompt_ids + response_ids, labels, response_ids))
    if not examples or len(skipped) > MAX_SKIPPED_SHARE * len(rows):
        longest = max(len(tokenize_row(tokenizer, r, fmt, fields)[0]) for r in rows)
        raise FinetuneError(
            f"max_len={max_len} is too small: {len(skipped)} of {len(rows)} rows have prompts of {max_len}+ tokens "
            f"and no room left for the response (longest prompt: {longest} tokens); raise max_len"
        )
    train, held_out = split(examples, eval_split, seed)
    template = "chat_template" if has_chat_template(tokenizer) or fmt == "text" else "fallback"
    return PreparedData(fmt, fields, train, held_out, skipped, rows_sha256(rows), template)


def split(examples: list[Example], eval_split: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Seeded held-out split; at least one training example, and one held-out example when eval_split > 0 and some
    row can be spared.

    A contributor's last training row is never held out: held-out rows are neither trained on nor in the attribution
    index, so a contributor with every row held out could never be credited for this model. Rows are drawn in a
    seeded random order and a row is skipped when holding it out would leave its contributor without a training
    row; a datanet where every contributor has one row therefore gets no held-out rows (the manifest says so).
    Rows without a contributor can always be held out.
    """
    if eval_split <= 0 or len(examples) < 2:
        return list(examples), []
    n_eval = min(max(1, round(len(examples) * eval_split)), len(examples) - 1)
    order = np.random.default_rng([seed, 0xE7A1]).permutation(len(examples))
    training_rows_left = Counter(ex.contributor for ex in examples if ex.contributor)
    held: set[int] = set()
    for i in order.tolist():
        if len(held) == n_eval:
            break
        contributor = examples[i].contributor
        if contributor and training_rows_left[contributor] <= 1:
            continue
        held.add(i)
        if contributor:
            training_rows_left[contributor] -= 1
    train = [ex for i, ex in enumerate(examples) if i not in held]
    return train, [ex for i, ex in enumerate(examples) if i in held]


def held_out_record(prepared: PreparedData) -> dict[str, Any]:
    """Which rows (and whose) the held-out split kept out of training and the attribution index."""
    trained = {ex.contributor for ex in prepared.train if ex.contributor}
    per_contributor = Counter(ex.contributor for ex in prepared.eval if ex.contributor)
    return {
        "eval_row_ids": [_jsonable(ex.row_id) for ex in prepared.eval],
        "eval_contributors": dict(sorted(per_contributor.items())),
        "contributors_left_out_entirely": sorted(set(per_contributor) - trained),
        "eval_rule": "held-out rows are not trained on and not in the attribution index (their contributors earn "
        "nothing for them from this model); a contributor's last training row is never held out",
    }


# --- order and batches ---------------------------------------------------------------------------------------------


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The seeded permutation of the training examples for one epoch (same seed → same order, on any machine)."""
    return np.random.default_rng([seed, epoch]).permutation(n).tolist()


def order_hash(row_ids_by_epoch: Sequence[Sequence[Any]]) -> str:
    """sha256 of the planned example order (row ids, epoch by epoch): lets anyone check the data order claim."""
    return canonical_hash([[_jsonable(r) for r in epoch] for epoch in row_ids_by_epoch])


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, int | str) else str(value)


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors: input_ids, attention_mask, labels (IGNORE on padding)."""
    import torch

    width = max(len(ex.input_ids) for ex in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for i, ex in enumerate(examples):
        n = len(ex.input_ids)
        ids[i, :n] = torch.tensor(ex.input_ids)
        mask[i, :n] = 1
        labels[i, :n] = torch.tensor(ex.labels)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def loss_token_count(examples: Sequence[Example]) -> int:
    """Tokens the causal-LM loss counts (labels are shifted by one: the first position predicts nothing)."""
    return sum(sum(1 for label in ex.labels[1:] if label != IGNORE) for ex in examples)
