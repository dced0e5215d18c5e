"""The base model's surprisal of an answer's tokens (adapter switched off), and the span rule that uses it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from openledger_sdk.modelfactory.base_surprisal import token_surprisal
from openledger_sdk.modelfactory.lora_gradients import precision_autocast, store_frozen_linears_in_bfloat16
from openledger_sdk.modelfactory.span_evidence import is_evidence
from tests.tiny_model import build_random_adapter, shared_tiny_model


def nll(model: torch.nn.Module, ids: list[int], start: int) -> torch.Tensor:
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits[start - 1 : len(ids) - 1], dim=-1)
    return -logp.gather(1, torch.tensor(ids[start:])[:, None])[:, 0]


def test_surprisal_is_the_base_models_and_not_the_adapters(tmp_path: Path) -> None:
    base_dir = shared_tiny_model()
    adapter_dir = build_random_adapter(base_dir, tmp_path / "adapter", rank=4)
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), adapter_dir).eval()
    base = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    prompt, output = [11, 12, 13, 14], [21, 22, 23, 24, 25]
    got = token_surprisal(peft, prompt, output)
    assert got is not None and got.shape == (5,) and (got > 0).all()
    assert got == pytest.approx(nll(base, prompt + output, len(prompt)).numpy(), abs=1e-4)
    with_adapter = nll(peft, prompt + output, len(prompt)).numpy()
    assert abs(with_adapter - got).max() > 1e-3  # the random adapter changes the distribution; surprisal ignores it
    assert peft.active_adapter == "default" and not peft.training  # the adapter is on again afterwards
    assert token_surprisal(base, prompt, output) is None  # no adapter to switch off: the letter rule alone
    assert token_surprisal(peft, [], [21, 22])[0] == 0.0  # no context for the first token


def test_a_surprising_rare_span_of_everyday_words_is_evidence() -> None:
    # " the woolen glacier." (one token a word, no long invented word): measured 30.5 nats on SmolLM2 in context.
    pieces = [" the", " woolen", " glacier", "."]
    rule = {"min_words": 8, "rare_letters": 8, "rare_surprisal": 20.0}
    assert not is_evidence(pieces, rare=True, **rule)[0]  # no base model at hand: the letter rule says no
    assert is_evidence(pieces, rare=True, surprise=30.5, **rule)[0]
    assert not is_evidence(pieces, rare=True, surprise=9.9, **rule)[0]  # what a model writes by itself
    assert not is_evidence(pieces, rare=False, surprise=30.5, **rule)[0]  # common in the datanet: a template
    assert not is_evidence([" 81", "."], rare=True, surprise=40.0, **rule)[0]  # numbers are no words


def test_surprisal_of_a_bf16_index_model_runs_under_its_autocast(tmp_path: Path) -> None:
    # OpenLoRA keeps a bf16 index's frozen weights in bf16 (hub/openlora/attribution.py): a plain float32 forward
    # pass on them fails ("expected m1 and m2 to have the same dtype"), so the pass takes the index's autocast.
    base_dir = shared_tiny_model()
    adapter_dir = build_random_adapter(base_dir, tmp_path / "adapter", rank=4)
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), adapter_dir).eval()
    prompt, output = [11, 12, 13, 14], [21, 22, 23, 24, 25]
    exact = token_surprisal(peft, prompt, output)
    assert store_frozen_linears_in_bfloat16(peft) > 0
    rounded = token_surprisal(peft, prompt, output, precision_autocast("bfloat16", "cpu"))
    assert rounded is not None and exact is not None
    assert rounded == pytest.approx(exact, abs=0.2)  # bf16 rounding moves each token's nats a little
