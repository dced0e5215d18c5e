"""Sampling controls in the batched engine (issue 17, item 1): presence / frequency penalties, logit bias and
logprobs, each row of one mixed batch with its own adapter and settings, checked against a transformers reference:
PEFT's merged model through `generate` with transformers' own `SequenceBiasLogitsProcessor` for the bias and a
penalty processor written here from OpenAI's formula (a per-token loop: a different implementation from the
engine's batched scatter), whose processed scores give the reference logprobs."""

from __future__ import annotations

import collections
from functools import cache

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList, SequenceBiasLogitsProcessor

from hub.openlora import EngineConfig, OpenLoRAEngine, SamplingParams
from hub.openlora.errors import InvalidRequestError
from hub.openlora.logits_processing import process_logits
from tests.tiny_model import merged_reference_model, shared_assets

torch.set_num_threads(2)


class OpenAIPenalties(LogitsProcessor):
    """OpenAI's presence / frequency penalties over the generated tokens, one token at a time."""

    def __init__(self, prompt_len: int, presence: float, frequency: float) -> None:
        self.prompt_len, self.presence, self.frequency = prompt_len, presence, frequency

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores.clone()
        for row in range(input_ids.shape[0]):
            for token, count in collections.Counter(input_ids[row, self.prompt_len :].tolist()).items():
                scores[row, token] -= count * self.frequency + self.presence
        return scores


@cache
def _reference_model(adapter_id: str | None):
    model_dir, adapters = shared_assets()
    return merged_reference_model(model_dir, adapters / adapter_id if adapter_id else None)


def reference(adapter_id: str | None, prompt: list[int], params: SamplingParams):
    """Greedy tokens and each step's log-probabilities (of the processed scores) from transformers' generate."""
    processors = LogitsProcessorList([OpenAIPenalties(len(prompt), params.presence_penalty, params.frequency_penalty)])
    if params.logit_bias:
        processors.append(SequenceBiasLogitsProcessor([[[tok], bias] for tok, bias in params.logit_bias]))
    with torch.no_grad():
        out = _reference_model(adapter_id).generate(
            torch.tensor([prompt]),
            max_new_tokens=params.max_tokens,
            do_sample=False,
            logits_processor=processors,
            output_scores=True,
            return_dict_in_generate=True,
        )
    tokens = out.sequences[0, len(prompt) :].tolist()
    return tokens, [torch.log_softmax(score[0].float(), dim=-1) for score in out.scores]


def fresh_engine(start: bool = True) -> OpenLoRAEngine:
    """An engine over the tiny model and its eight adapters; start=False queues requests into one first batch."""
    model_dir, adapters = shared_assets()
    config = EngineConfig(max_batch_size=16, max_slots=8, max_lora_rank=16)
    return OpenLoRAEngine(model_dir, adapters_dir=adapters, config=config, start=start)


@pytest.fixture(scope="module")
def engine():
    with fresh_engine() as eng:
        yield eng


PROMPT = "The cat sat on the mat and the dog"


def test_mixed_batch_of_penalties_bias_and_logprobs_matches_transformers(engine: OpenLoRAEngine) -> None:
    prompt = engine.encode(PROMPT)
    plain = SamplingParams(max_tokens=12, temperature=0)
    # Which tokens the unpenalised answers use, so that bias and penalties surely change something.
    greedy_tokens = {m: engine.generate(m, prompt, plain).token_ids for m in ("ad-r2-all", "ad-r4-qv", "ad-r8-attn")}
    banned, boosted = greedy_tokens["ad-r8-attn"][0], greedy_tokens["ad-r8-attn"][3]
    rows = [
        ("ad-r2-all", dict(presence_penalty=2.0, logprobs=3)),
        ("ad-r4-qv", dict(frequency_penalty=1.5, logprobs=0)),
        ("ad-r8-attn", dict(logit_bias=((banned, -100.0), (boosted, 4.0)), logprobs=5)),
        ("model", dict(presence_penalty=-1.0, frequency_penalty=-0.5, logit_bias=((banned, 3.0),), logprobs=20)),
        ("ad-r16-mlp", dict(logprobs=2)),
        ("ad-r8-all", dict(presence_penalty=1.0, frequency_penalty=1.0)),
        ("ad-r2-all", {}),
    ]
    with fresh_engine(start=False) as batch_engine:  # queue the whole mixed batch first, so it runs as one
        params = [SamplingParams(max_tokens=12, temperature=0, **settings) for _, settings in rows]
        handles = [batch_engine.submit(model, prompt, p) for (model, _), p in zip(rows, params, strict=True)]
        batch_engine.start()
        results = [h.result() for h in handles]
        assert batch_engine.scheduler.peak_batch == len(rows)  # one batch held every row
    for (model, _settings), p, result in zip(rows, params, results, strict=True):
        tokens, ref_logprobs = reference(None if model == "model" else model, prompt, p)
        assert result.token_ids == tokens, f"{model} {_settings}: tokens differ from transformers"
        if p.logprobs is None:
            assert result.logprobs is None
            continue
        answer = tokens[:-1] if tokens[-1] in engine.runner.eos_token_ids else tokens
        assert [lp.token_id for lp in result.logprobs] == answer
        for step, (ours, ref) in enumerate(zip(result.logprobs, ref_logprobs, strict=False)):
            assert ours.logprob == pytest.approx(float(ref[ours.token_id]), abs=2e-4), (model, step)
            top = torch.topk(ref, p.logprobs)
            assert [t for t, _ in ours.top] == top.indices.tolist(), (model, step)
            assert [v for _, v in ours.top] == pytest.approx(top.values.tolist(), abs=2e-4)
    by_row = [r.token_ids for r in results]
    assert by_row[0] != greedy_tokens["ad-r2-all"] and by_row[1] != greedy_tokens["ad-r4-qv"]  # penalties bite
    assert banned not in by_row[2] and boosted in by_row[2]  # the ban holds; the boosted token shows up
    assert by_row[6] == greedy_tokens["ad-r2-all"]  # a plain row beside them is untouched


def test_penalties_leave_other_rows_alone_and_seeded_sampling_reproduces(engine: OpenLoRAEngine) -> None:
    prompt = engine.encode(PROMPT)
    penalised = SamplingParams(max_tokens=10, temperature=0.9, seed=7, frequency_penalty=2.0, logprobs=1)
    single = engine.generate("ad-r4-rslora", prompt, penalised)
    loud = SamplingParams(max_tokens=10, temperature=1.2, logit_bias=((13, 50.0),))
    with fresh_engine(start=False) as e:
        others = [e.submit(m, prompt, loud) for m in ("ad-r2-ko", "model")]
        mine = e.submit("ad-r4-rslora", prompt, penalised)
        e.start()
        in_batch = mine.result()
        assert all(set(h.result().token_ids) == {13} for h in others)  # +50 on one token: it is all they say
    assert in_batch.token_ids == single.token_ids
    assert [lp.logprob for lp in in_batch.logprobs] == pytest.approx([lp.logprob for lp in single.logprobs], abs=1e-5)


def test_processing_is_a_no_op_without_settings_and_counts_only_the_answer() -> None:
    logits = torch.randn(3, 11)
    plain = [SamplingParams(), SamplingParams(temperature=0), SamplingParams(logprobs=2)]
    assert process_logits(logits, plain, [[1, 2], [], [3]]) is logits  # nothing to do: no copy, no change
    params = [
        SamplingParams(presence_penalty=0.5, frequency_penalty=0.25),
        SamplingParams(frequency_penalty=1),
        plain[0],
    ]
    out = process_logits(logits, params, [[4, 4, 4, 9], [7], [4]])  # row 1 is shorter: padded, counted once
    expected = logits.clone()
    expected[0, 4] -= 3 * 0.25 + 0.5
    expected[0, 9] -= 0.25 + 0.5
    expected[1, 7] -= 1
    assert torch.equal(out, expected) and not torch.equal(out, logits)


def test_bad_settings_are_refused_naming_the_field(engine: OpenLoRAEngine) -> None:
    for bad, param in (
        (SamplingParams(presence_penalty=2.5), "presence_penalty"),
        (SamplingParams(frequency_penalty=-3), "frequency_penalty"),
        (SamplingParams(logit_bias=((5, 101.0),)), "logit_bias"),
        (SamplingParams(logit_bias=((engine.runner.vocab_size, 1.0),)), "logit_bias"),
        (SamplingParams(logit_bias=((-1, 1.0),)), "logit_bias"),
        (SamplingParams(logprobs=21), "logprobs"),
    ):
        with pytest.raises(InvalidRequestError) as refused:
            engine.submit("model", [1, 2, 3], bad)
        assert refused.value.param == param
