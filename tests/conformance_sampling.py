"""OpenAI conformance: sampling controls (logprobs, penalties, logit_bias) and the legacy completions API."""

from __future__ import annotations

import asyncio

from tests.conformance_core import (
    ADAPTERS,
    HI,
    Target,
    answer_bytes,
    chat,
    check,
    complete,
    refused,
    run_async,
)


# -- sampling controls -------------------------------------------------------------------------------------------------
@check("chat: logprobs true gives one entry per answer token, bytes join to the answer")
def _(t: Target) -> None:
    out = chat(t, max_tokens=10, logprobs=True)
    content = out.choices[0].logprobs.content
    assert content and all(e.logprob <= 0 and e.top_logprobs == [] for e in content)
    assert len(content) in (out.usage.completion_tokens, out.usage.completion_tokens - 1)  # the end token: none
    # Random tiny-model answers split characters across tokens: the joined bytes decode to the answer.
    assert answer_bytes(content).decode("utf-8", errors="replace") == out.choices[0].message.content
    assert out.choices[0].logprobs.refusal is None


@check("chat: top_logprobs lists the k most likely, greedy picks the first")
def _(t: Target) -> None:
    content = chat(t, max_tokens=6, logprobs=True, top_logprobs=5).choices[0].logprobs.content
    for entry in content:
        values = [top.logprob for top in entry.top_logprobs]
        assert len(values) == 5 and values == sorted(values, reverse=True)
        assert entry.top_logprobs[0].token == entry.token and abs(entry.top_logprobs[0].logprob - entry.logprob) < 1e-6


@check("chat stream: logprobs arrive with the chunks and equal the non-streamed ones")
def _(t: Target) -> None:
    full = chat(t, max_tokens=12, logprobs=True, top_logprobs=2).choices[0].logprobs.content
    chunks = list(chat(t, max_tokens=12, logprobs=True, top_logprobs=2, stream=True))
    streamed = [e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert [(e.token, round(e.logprob, 5)) for e in streamed] == [(e.token, round(e.logprob, 5)) for e in full]


@check("chat: logprobs are those of the processed distribution (logit_bias shows in them)")
def _(t: Target) -> None:
    plain = chat(t, max_tokens=1, logprobs=True).choices[0].logprobs.content[0]
    rival = t.token_id(" wave")
    biased = chat(t, max_tokens=1, logprobs=True, top_logprobs=1, logit_bias={str(rival): 100})
    entry = biased.choices[0].logprobs.content[0]
    assert entry.token == " wave" and entry.logprob > -0.01 and plain.token != " wave"


@check("chat: logit_bias +100 makes a token the whole answer; -100 bans one")
def _(t: Target) -> None:
    boosted = chat(t, max_tokens=4, logit_bias={str(t.token_id(" sea")): 100})
    assert boosted.choices[0].message.content == " sea" * 4
    ban = t.greedy_ids(ADAPTERS[0], HI, 8)[0]
    banned = chat(t, max_tokens=8, logprobs=True, logit_bias={str(ban): -100}).choices[0].logprobs.content
    assert t.token_bytes(ban) not in [bytes(e.bytes) for e in banned]


@check("chat: presence_penalty -2 makes the answer repeat itself; +2 changes it")
def _(t: Target) -> None:
    greedy = chat(t, max_tokens=16, logprobs=True).choices[0].logprobs.content
    negative = chat(t, max_tokens=16, logprobs=True, presence_penalty=-2).choices[0].logprobs.content
    positive = chat(t, max_tokens=16, logprobs=True, presence_penalty=2).choices[0].logprobs.content
    tokens = [[e.token for e in run] for run in (greedy, negative, positive)]
    assert len(set(tokens[1])) < len(set(tokens[0])) and tokens[2] != tokens[0]


@check("chat: frequency_penalty 2 changes the greedy answer; the same request answers the same")
def _(t: Target) -> None:
    plain = chat(t, max_tokens=16).choices[0].message.content
    once = chat(t, max_tokens=16, frequency_penalty=2).choices[0].message.content
    assert once != plain and once == chat(t, max_tokens=16, frequency_penalty=2).choices[0].message.content


@check("async: penalties and bias apply per request in one concurrent batch")
def _(t: Target) -> None:
    settings = [{}, {"presence_penalty": 2}, {"frequency_penalty": -2}, {"logit_bias": {str(t.token_id(" sea")): 100}}]
    alone = [chat(t, max_tokens=10, **s).choices[0].message.content for s in settings]

    async def go() -> list[str]:
        async with t.aclient() as client:
            calls = [
                client.chat.completions.create(model=ADAPTERS[0], messages=HI, max_tokens=10, temperature=0, **s)
                for s in settings
            ]
            return [out.choices[0].message.content for out in await asyncio.gather(*calls)]

    assert run_async(go()) == alone and len(set(alone)) == len(alone)


# -- legacy completions ------------------------------------------------------------------------------------------------
@check("completions: Completion shape, usage, max_tokens 16 when omitted or null")
def _(t: Target) -> None:
    omitted = t.client().completions.create(model=ADAPTERS[1], prompt="Once upon a time", temperature=0)
    out = complete(t, max_tokens=None)
    assert omitted.choices[0].text == out.choices[0].text == complete(t, max_tokens=16).choices[0].text
    assert out.id.startswith("cmpl-") and out.object == "text_completion" and out.model == ADAPTERS[1]
    assert out.choices[0].index == 0 and isinstance(out.choices[0].text, str) and out.choices[0].logprobs is None
    assert out.usage.completion_tokens <= 16
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens


@check("completions: a list of prompts gives one choice each, in order")
def _(t: Target) -> None:
    out = complete(t, prompt=["Once upon a time", "The sea"])
    assert [c.index for c in out.choices] == [0, 1]
    assert out.choices[1].text == complete(t, prompt="The sea").choices[0].text


@check("completions: a prompt of token ids equals its text")
def _(t: Target) -> None:
    ids = t.engine.encode("Once upon a time")
    assert complete(t, prompt=ids).choices[0].text == complete(t).choices[0].text


@check("completions: stop, seed and temperature")
def _(t: Target) -> None:
    full = complete(t, max_tokens=16).choices[0].text
    stop = full[5:7]
    assert complete(t, max_tokens=16, stop=[stop]).choices[0].text == full[: full.index(stop)]
    sampled = [complete(t, temperature=1.2, seed=s).choices[0].text for s in (5, 5, 6)]
    assert sampled[0] == sampled[1]


@check("completions: user accepted, n=2 refused naming n")
def _(t: Target) -> None:
    assert complete(t, user="student-7").choices[0].text == complete(t).choices[0].text
    refused(lambda: complete(t, n=2), "n")


@check("completions stream: text joins; include_usage; finish reason")
def _(t: Target) -> None:
    full = complete(t, max_tokens=10)
    chunks = list(complete(t, max_tokens=10, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == full.choices[0].text
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == full.choices[0].finish_reason


@check("completions: logprobs k gives tokens, token_logprobs, top k (+ chosen), text_offset")
def _(t: Target) -> None:
    out = complete(t, max_tokens=8, logprobs=3).choices[0]
    lp = out.logprobs
    assert "".join(lp.tokens) == out.text and len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs)
    assert lp.text_offset == [sum(len(tok) for tok in lp.tokens[:i]) for i in range(len(lp.tokens))]
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert 3 <= len(top) <= 4 and top[token] == logprob and logprob == max(top.values())


@check("completions stream: logprobs per chunk equal the non-streamed ones")
def _(t: Target) -> None:
    full = complete(t, max_tokens=10, logprobs=1).choices[0].logprobs
    chunks = [c for c in complete(t, max_tokens=10, logprobs=1, stream=True) if c.choices and c.choices[0].logprobs]
    assert [tok for c in chunks for tok in c.choices[0].logprobs.tokens] == full.tokens
    assert [o for c in chunks for o in c.choices[0].logprobs.text_offset] == full.text_offset


@check("completions: penalties and logit_bias")
def _(t: Target) -> None:
    plain = complete(t, max_tokens=16).choices[0].text
    assert complete(t, max_tokens=16, frequency_penalty=2, presence_penalty=1).choices[0].text != plain
    assert complete(t, max_tokens=3, logit_bias={str(t.token_id(" sea")): 100}).choices[0].text == " sea" * 3
