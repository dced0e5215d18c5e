"""OpenLoRA engine: the correctness gate (mixed-adapter batches == PEFT merged models) and the engine's behaviour
under continuous batching, tier pressure, bad adapters, cancellation and load. Tiny random model, CPU."""

from __future__ import annotations

import json
import random
import shutil
import threading
import time
from functools import cache
from pathlib import Path

import pytest
import torch

import openledger_sdk.hardware as hardware
from hub.openlora import EngineConfig, OpenLoRAEngine, SamplingParams
from hub.openlora.config import serving_dtype
from hub.openlora.errors import (
    AdapterLoadError,
    ContextLengthError,
    EngineOverloadedError,
    InvalidRequestError,
    ModelNotFoundError,
    RequestCancelledError,
)
from hub.openlora.lora_batch import install_lora_layers
from tests.tiny_model import ADAPTER_SPECS, merged_reference_model, shared_assets

torch.set_num_threads(2)
ADAPTERS = list(ADAPTER_SPECS)
GREEDY = {"temperature": 0.0}


@pytest.fixture(scope="module")
def assets() -> tuple[Path, Path]:
    return shared_assets()


@pytest.fixture
def make_engine(assets):
    engines: list[OpenLoRAEngine] = []

    def make(adapters_dir: Path | None = None, start: bool = True, **config) -> OpenLoRAEngine:
        model_dir, default_adapters = assets
        cfg = EngineConfig(**{"max_batch_size": 32, "max_slots": 8, "max_lora_rank": 16, **config})
        engine = OpenLoRAEngine(model_dir, adapters_dir=adapters_dir or default_adapters, config=cfg, start=start)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


@cache
def _reference_model(adapter_id: str | None):
    model_dir, adapters = shared_assets()
    return merged_reference_model(model_dir, adapters / adapter_id if adapter_id else None)


def reference(adapter_id: str | None, prompt_ids: tuple[int, ...], max_tokens: int):
    """Greedy tokens and per-step logits from PEFT's merge_and_unload + plain `generate` (batch of one)."""
    model = _reference_model(adapter_id)
    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt_ids]),
            max_new_tokens=max_tokens,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        )
    return out.sequences[0, len(prompt_ids) :].tolist(), [lg[0] for lg in out.logits]


def random_prompts(engine: OpenLoRAEngine, n: int, seed: int, lo: int = 3, hi: int = 40) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(engine.runner.vocab_size) for _ in range(rng.randint(lo, hi))] for _ in range(n)]


def wait_for_prefetch(engine: OpenLoRAEngine, adapter_ids: list[str], timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while any(engine.store.pending(a) for a in adapter_ids) and time.time() < deadline:
        time.sleep(0.01)


def assert_matches_reference(completion, adapter_id, prompt, max_tokens, check_logits=True):
    tokens, logits = reference(adapter_id, tuple(prompt), max_tokens)
    assert completion.token_ids == tokens, f"adapter {adapter_id}: greedy tokens differ from the merged model"
    if check_logits:
        assert completion.logits is not None and len(completion.logits) == len(logits)
        for step, (ours, ref) in enumerate(zip(completion.logits, logits, strict=True)):
            diff = (ours - ref).abs().max().item()
            assert diff < 1e-4, f"adapter {adapter_id} step {step}: logits differ by {diff}"


# -- the correctness gate ----------------------------------------------------------------------------------------
def test_gate_32_requests_8_adapters_match_merged_models(make_engine):
    engine = make_engine(start=False)  # queue everything first, so the 32 requests run as one mixed batch
    rng = random.Random(7)
    prompts = random_prompts(engine, 32, seed=1)
    jobs = []
    for i, prompt in enumerate(prompts):
        adapter_id = ADAPTERS[i % len(ADAPTERS)] if i < 32 else rng.choice(ADAPTERS)
        max_tokens = rng.randint(4, 12)
        params = SamplingParams(max_tokens=max_tokens, return_logits=True, **GREEDY)
        jobs.append((engine.submit(adapter_id, prompt, params), adapter_id, prompt, max_tokens))
    wait_for_prefetch(engine, ADAPTERS)  # submit started the adapter loads: let them land, so all 32 fit one step
    engine.start()
    for handle, adapter_id, prompt, max_tokens in jobs:
        assert_matches_reference(handle.result(), adapter_id, prompt, max_tokens)
    assert engine.metrics.batch_size.labels("decode")._sum.get() > 0
    # One prefill for all 32 and no more decode steps than the longest request needs: they were batched together.
    assert engine.scheduler.steps <= 12


def test_base_model_rows_mixed_with_adapter_rows(make_engine):
    engine = make_engine(start=False)
    prompts = random_prompts(engine, 6, seed=2)
    models = [engine.base_model_id, ADAPTERS[0], engine.base_model_id, ADAPTERS[3], ADAPTERS[3], engine.base_model_id]
    params = SamplingParams(max_tokens=6, return_logits=True, **GREEDY)
    handles = [engine.submit(m, p, params) for m, p in zip(models, prompts, strict=True)]
    engine.start()
    for h, m, p in zip(handles, models, prompts, strict=True):
        assert_matches_reference(h.result(), None if m == engine.base_model_id else m, p, 6)


def test_uniform_batch_fast_path_matches(make_engine):
    """All rows on one adapter take the no-gather path; results must be the same."""
    engine = make_engine(start=False)
    prompts = random_prompts(engine, 5, seed=3)
    params = SamplingParams(max_tokens=5, return_logits=True, **GREEDY)
    handles = [engine.submit(ADAPTERS[6], p, params) for p in prompts]
    engine.start()
    for h, p in zip(handles, prompts, strict=True):
        assert_matches_reference(h.result(), ADAPTERS[6], p, 5)


def test_packed_step_joins_prefill_to_decode_and_matches(make_engine):
    """The packed forward (used for Llama-style models) decodes running rows and prefills new prompts in one pass."""
    engine = make_engine()
    assert engine.runner.packed is not None
    prompts = random_prompts(engine, 6, seed=17)
    long_params = SamplingParams(max_tokens=60, return_logits=True, **GREEDY)
    first = [(engine.submit(ADAPTERS[i], p, long_params), ADAPTERS[i], p, 60) for i, p in enumerate(prompts[:3])]
    deadline = time.time() + 30
    while engine.scheduler.decode_steps < 2 and time.time() < deadline:  # the first three are decoding ...
        time.sleep(0.001)
    params = SamplingParams(max_tokens=8, return_logits=True, **GREEDY)
    models = [ADAPTERS[5], engine.base_model_id, ADAPTERS[5]]
    late = [(engine.submit(m, p, params), m, p, 8) for m, p in zip(models, prompts[3:], strict=True)]  # ... these join
    for h, m, p, n in first + late:
        assert_matches_reference(h.result(), None if m == engine.base_model_id else m, p, n)


def test_generic_forward_matches_merged_models(make_engine):
    """Models the packed forward does not cover run through the transformers decoder: same results."""
    engine = make_engine(start=False)
    engine.runner.use_generic_forward()
    prompts = random_prompts(engine, 12, seed=18)
    models = [*ADAPTERS, engine.base_model_id, ADAPTERS[0], ADAPTERS[0], ADAPTERS[3]]
    params = SamplingParams(max_tokens=6, return_logits=True, ignore_eos=True, **GREEDY)
    jobs = [(engine.submit(m, p, params), m, p) for m, p in zip(models, prompts, strict=True)]
    engine.start()
    for h, m, p in jobs:
        assert_matches_reference(h.result(), None if m == engine.base_model_id else m, p, 6)


# -- tiers -------------------------------------------------------------------------------------------------------
def test_cpu_lru_byte_budget_and_tier_counters(make_engine):
    engine = make_engine(max_slots=1)
    sizes = {}
    for a in ADAPTERS[:3]:
        sizes[a] = engine.store.load_from_disk(a).nbytes
    engine.close()
    # Room for the two larger adapters but not for all three.
    budget = sizes[ADAPTERS[1]] + sizes[ADAPTERS[2]] + 1
    assert budget < sum(sizes.values())
    engine = make_engine(max_slots=1, cpu_cache_bytes=budget)
    prompt = random_prompts(engine, 1, seed=4)[0]
    params = SamplingParams(max_tokens=2, **GREEDY)

    def run(a):
        engine.generate(a, prompt, params)
        return engine.store.stats.snapshot()

    s = run(ADAPTERS[0])
    assert (s["disk_loads"], s["cpu_hits"], s["device_hits"]) == (1, 0, 0)
    s = run(ADAPTERS[0])  # still in the only device slot
    assert s["device_hits"] == 1 and s["disk_loads"] == 1
    run(ADAPTERS[1])  # evicts A0 from the slot, stays within the CPU budget
    s = run(ADAPTERS[0])  # back from the CPU tier
    assert s["cpu_hits"] == 1 and s["disk_loads"] == 2 and s["slot_evictions"] == 2
    run(ADAPTERS[2])  # the CPU budget cannot hold all three: the least recently used one (A1) goes
    s = engine.store.stats.snapshot()
    assert s["cpu_evictions"] >= 1
    assert engine.store.cpu.used_bytes <= budget
    assert ADAPTERS[1] not in engine.store.cpu.ids() and ADAPTERS[2] in engine.store.cpu.ids()
    s = run(ADAPTERS[1])  # evicted from CPU: read from disk again
    assert s["disk_loads"] == 4
    metrics = engine.metrics.render().decode()
    assert 'openlora_adapter_cache_hits_total{tier="cpu"} 1.0' in metrics
    assert "openlora_adapter_load_seconds_count 4.0" in metrics


def test_slot_eviction_keeps_results_exact(make_engine):
    """8 adapters through 3 slots: requests wait for a slot, slots are reused (LRU), outputs stay exact."""
    engine = make_engine(start=False, max_slots=3)
    prompts = random_prompts(engine, 16, seed=5)
    params = SamplingParams(max_tokens=5, return_logits=True, **GREEDY)
    jobs = [(engine.submit(ADAPTERS[i % 8], p, params), ADAPTERS[i % 8], p) for i, p in enumerate(prompts)]
    engine.start()
    for h, a, p in jobs:
        assert_matches_reference(h.result(), a, p, 5)
    stats = engine.store.stats.snapshot()
    assert stats["slot_evictions"] >= 5
    assert len(engine.slots.resident()) == 3
    assert engine.slots.pinned_count() == 0


def test_adapter_with_rank_above_slot_rank_fails_clearly(make_engine):
    engine = make_engine(max_lora_rank=8)
    with pytest.raises(AdapterLoadError, match="rank 16 exceeds"):
        engine.generate("ad-r16-mlp", "hello", SamplingParams(max_tokens=2))
    assert engine.generate("ad-r8-all", "hello", SamplingParams(max_tokens=2)).completion_tokens == 2


# -- continuous batching ---------------------------------------------------------------------------------------
def test_request_joins_while_others_decode(make_engine):
    engine = make_engine()
    prompts = random_prompts(engine, 3, seed=6)
    long_params = SamplingParams(max_tokens=40, return_logits=True, ignore_eos=True, **GREEDY)
    first = engine.submit(ADAPTERS[0], prompts[0], long_params)
    second = engine.submit(ADAPTERS[1], prompts[1], long_params)
    events = iter(first)
    for _ in range(5):  # wait until the first has decoded a few tokens
        next(events)
    late = engine.submit(ADAPTERS[2], prompts[2], SamplingParams(max_tokens=4, return_logits=True, **GREEDY))
    late_result = late.result()
    # The late request joined the running batch and left it while the long ones were still decoding.
    assert not first.done and not second.done
    assert engine.scheduler.peak_batch == 3
    assert list(events)[-1].finish_reason == "length"
    assert_matches_reference(late_result, ADAPTERS[2], prompts[2], 4)
    assert_matches_reference(second.result(), ADAPTERS[1], prompts[1], 40)


def test_late_request_finishes_before_long_ones(make_engine):
    engine = make_engine()
    prompts = random_prompts(engine, 2, seed=8)
    long_handle = engine.submit(ADAPTERS[4], prompts[0], SamplingParams(max_tokens=60, ignore_eos=True, **GREEDY))
    it = iter(long_handle)
    next(it)
    short = engine.generate(ADAPTERS[5], prompts[1], SamplingParams(max_tokens=3, **GREEDY))
    assert short.completion_tokens == 3
    assert not long_handle.done  # the short request did not wait for the long one
    assert list(it)[-1].finish_reason == "length"


# -- sampling, stop strings, limits ----------------------------------------------------------------------------
def test_stop_string_truncates_and_is_never_streamed(make_engine):
    engine = make_engine()
    prompt = random_prompts(engine, 1, seed=9)[0]
    full = engine.generate(ADAPTERS[7], prompt, SamplingParams(max_tokens=20, ignore_eos=True, **GREEDY))
    assert len(full.text) > 12
    stop = full.text[8:11]
    expected = full.text[: full.text.index(stop)]
    handle = engine.submit(ADAPTERS[7], prompt, SamplingParams(max_tokens=20, stop=(stop, "zzzz-never"), **GREEDY))
    events = list(handle)
    streamed = "".join(e.text for e in events)
    assert streamed == expected
    assert stop not in streamed
    assert events[-1].finish_reason == "stop"
    assert events[-1].completion_tokens < 20


def test_eos_ends_with_stop(make_engine):
    engine = make_engine()
    prompt = random_prompts(engine, 1, seed=14)[0]
    full = engine.generate(ADAPTERS[2], prompt, SamplingParams(max_tokens=6, ignore_eos=True, **GREEDY))
    engine.runner.eos_token_ids = frozenset({full.token_ids[2]})  # pretend the third token is EOS
    out = engine.generate(ADAPTERS[2], prompt, SamplingParams(max_tokens=6, **GREEDY))
    assert (out.token_ids, out.finish_reason) == (full.token_ids[:3], "stop")
    assert out.text == engine.tokenizer.decode(full.token_ids[:2])  # EOS itself is not text
    ignored = engine.generate(ADAPTERS[2], prompt, SamplingParams(max_tokens=6, ignore_eos=True, **GREEDY))
    assert ignored.token_ids == full.token_ids


def test_seeded_sampling_is_reproducible_across_batches(make_engine):
    engine = make_engine()
    prompt = random_prompts(engine, 1, seed=10)[0]
    params = SamplingParams(max_tokens=8, temperature=1.0, top_p=0.9, seed=1234)
    alone = engine.generate(ADAPTERS[1], prompt, params)
    others = [engine.submit(a, prompt, SamplingParams(max_tokens=8, temperature=0.7)) for a in ADAPTERS[:4]]
    batched = engine.generate(ADAPTERS[1], prompt, params)
    for h in others:
        h.result()
    assert alone.token_ids == batched.token_ids
    greedy = engine.generate(ADAPTERS[1], prompt, SamplingParams(max_tokens=8, **GREEDY))
    tiny_p = engine.generate(ADAPTERS[1], prompt, SamplingParams(max_tokens=8, temperature=1.0, top_p=1e-6))
    assert tiny_p.token_ids == greedy.token_ids  # top-p keeps only the top token


def test_max_tokens_beyond_context_is_a_clear_error(make_engine):
    engine = make_engine()
    assert engine.max_seq_len == 256
    with pytest.raises(ContextLengthError, match="maximum context length is 256 tokens"):
        engine.submit(ADAPTERS[0], [1, 2, 3], SamplingParams(max_tokens=300))
    with pytest.raises(ContextLengthError):
        engine.submit(ADAPTERS[0], list(range(300)), SamplingParams(max_tokens=1))
    with pytest.raises(InvalidRequestError):
        engine.submit(ADAPTERS[0], "", SamplingParams(max_tokens=1))
    with pytest.raises(InvalidRequestError):
        engine.submit(ADAPTERS[0], "hi", SamplingParams(max_tokens=1, temperature=-1))
    # Without max_tokens a request runs to the context length and ends with "length".
    out = engine.generate(ADAPTERS[0], list(range(250)), SamplingParams(max_tokens=None, ignore_eos=True, **GREEDY))
    assert (out.completion_tokens, out.finish_reason) == (6, "length")


def test_unknown_model(make_engine):
    engine = make_engine()
    for bad in ("no-such-adapter", "../model", "/etc"):
        with pytest.raises(ModelNotFoundError, match="/v1/models"):
            engine.submit(bad, "hi")


# -- failure isolation, cancellation, load -----------------------------------------------------------------------
def _copy_adapters(assets, tmp_path: Path) -> Path:
    dst = tmp_path / "adapters"
    shutil.copytree(assets[1], dst)
    return dst


def test_corrupt_adapter_fails_only_its_requests(make_engine, assets, tmp_path):
    adapters = _copy_adapters(assets, tmp_path)
    shutil.copytree(adapters / ADAPTERS[0], adapters / "corrupt")
    (adapters / "corrupt" / "adapter_model.safetensors").write_bytes(b"\x00garbage" * 10)
    shutil.copytree(adapters / ADAPTERS[0], adapters / "wrong-shape")
    from safetensors.torch import load_file, save_file

    weights = load_file(adapters / "wrong-shape" / "adapter_model.safetensors")
    key = next(k for k in weights if k.endswith("lora_A.weight"))
    weights[key] = torch.zeros(weights[key].shape[0], 7)
    save_file(weights, adapters / "wrong-shape" / "adapter_model.safetensors")
    shutil.copytree(adapters / ADAPTERS[0], adapters / "bad-json")
    (adapters / "bad-json" / "adapter_config.json").write_text("{not json")

    engine = make_engine(adapters_dir=adapters, start=False)
    prompts = random_prompts(engine, 8, seed=11)
    params = SamplingParams(max_tokens=4, return_logits=True, **GREEDY)
    good = [(engine.submit(ADAPTERS[i], prompts[i], params), ADAPTERS[i], prompts[i]) for i in range(4)]
    bad = {name: engine.submit(name, prompts[4], params) for name in ("corrupt", "wrong-shape", "bad-json")}
    engine.start()
    reasons = {
        "corrupt": "corrupt or unreadable",
        "wrong-shape": "do not fit the base layer",
        "bad-json": "not valid JSON",
    }
    for name, handle in bad.items():
        with pytest.raises(AdapterLoadError, match=reasons[name]) as exc:
            handle.result()
        assert f"adapter `{name}`" in str(exc.value)
    for h, a, p in good:
        assert_matches_reference(h.result(), a, p, 4)
    assert engine.store.stats.snapshot()["load_failures"] == 3
    assert engine.scheduler.waiting_count == 0
    # The engine keeps serving, and a fixed adapter file is picked up by the next request.
    shutil.rmtree(adapters / "corrupt")
    shutil.copytree(adapters / ADAPTERS[1], adapters / "corrupt")
    assert engine.generate("corrupt", prompts[5], SamplingParams(max_tokens=2)).completion_tokens == 2


def test_non_finite_adapter_weights_are_rejected(make_engine, assets, tmp_path):
    from safetensors.torch import load_file, save_file

    adapters = _copy_adapters(assets, tmp_path)
    for name, value in (("has-nan", float("nan")), ("has-inf", float("inf")), ("huge-but-finite", 1e30)):
        shutil.copytree(adapters / ADAPTERS[0], adapters / name)
        weights = load_file(adapters / name / "adapter_model.safetensors")
        key = sorted(k for k in weights if k.endswith("lora_B.weight"))[1]
        weights[key][0, 0] = value
        save_file(weights, adapters / name / "adapter_model.safetensors")
    engine = make_engine(adapters_dir=adapters, start=False)
    for name in ("has-nan", "has-inf"):
        with pytest.raises(AdapterLoadError, match="contains NaN or infinite values"):
            engine.store.load_from_disk(name)
    assert engine.store.load_from_disk("huge-but-finite").rank == 2  # its norm overflows; the values do not


def test_cancellation_frees_the_slot(make_engine):
    engine = make_engine(max_slots=1)
    prompts = random_prompts(engine, 2, seed=12)
    hog = engine.submit(ADAPTERS[0], prompts[0], SamplingParams(max_tokens=200, ignore_eos=True, **GREEDY))
    events = iter(hog)
    next(events)
    assert engine.slots.pinned_count() == 1
    waiter = engine.submit(ADAPTERS[1], prompts[1], SamplingParams(max_tokens=3, **GREEDY))
    time.sleep(0.2)
    assert not waiter.done  # the only slot is pinned by the running request
    hog.cancel()
    assert list(events)[-1].finish_reason == "cancelled"
    assert waiter.result().completion_tokens == 3
    deadline = time.time() + 5
    while engine.slots.pinned_count() and time.time() < deadline:
        time.sleep(0.01)
    assert engine.slots.pinned_count() == 0 and not engine.scheduler.running


def test_cancel_while_queued(make_engine):
    engine = make_engine(start=False)
    h = engine.submit(ADAPTERS[0], "hello", SamplingParams(max_tokens=3))
    h.cancel()
    engine.start()
    with pytest.raises(RequestCancelledError):
        h.result()
    assert engine.scheduler.waiting_count == 0


def test_500_concurrent_requests_all_complete(make_engine):
    engine = make_engine(max_queue=1000)
    rng = random.Random(13)
    prompts = random_prompts(engine, 500, seed=13, lo=2, hi=12)
    handles = []
    lock = threading.Lock()

    def client(chunk):
        for p in chunk:
            h = engine.submit(rng.choice([*ADAPTERS, engine.base_model_id]), p, SamplingParams(max_tokens=3, **GREEDY))
            with lock:
                handles.append(h)

    threads = [threading.Thread(target=client, args=(prompts[i::5],)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results = [h.result() for h in handles]
    assert len(results) == 500
    assert all(r.completion_tokens == 3 or r.finish_reason == "stop" for r in results)
    assert len({r.request_id for r in results}) == 500
    assert engine.scheduler.waiting_count == 0 and not engine.scheduler.running
    assert max(engine.metrics.batch_size.labels("decode")._sum.get(), 0) > 0


def test_queue_is_bounded(make_engine):
    engine = make_engine(start=False, max_queue=5)
    for _ in range(5):
        engine.submit(ADAPTERS[0], "hi", SamplingParams(max_tokens=1))
    with pytest.raises(EngineOverloadedError, match="queue is full"):
        engine.submit(ADAPTERS[0], "hi", SamplingParams(max_tokens=1))


def test_alpha_pattern_and_runtime_registered_adapter_match_peft(make_engine, assets, tmp_path):
    src = assets[1] / "ad-r8-all"
    dst = tmp_path / "patterned"
    shutil.copytree(src, dst)
    config_path = dst / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["alpha_pattern"] = {"q_proj": 1.0, "down_proj": 40.0}
    config_path.write_text(json.dumps(config))
    engine = make_engine()
    info = engine.load_adapter("patterned", dst)
    assert info["rank"] == 8
    prompt = random_prompts(engine, 1, seed=15)[0]
    out = engine.generate("patterned", prompt, SamplingParams(max_tokens=5, return_logits=True, **GREEDY))
    ref_model = merged_reference_model(assets[0], dst)
    with torch.no_grad():
        ref = ref_model.generate(
            torch.tensor([prompt]), max_new_tokens=5, do_sample=False, output_logits=True, return_dict_in_generate=True
        )
    assert out.token_ids == ref.sequences[0, len(prompt) :].tolist()
    assert max((a - b[0]).abs().max().item() for a, b in zip(out.logits, ref.logits, strict=True)) < 1e-4
    # ... and differs from the same weights without the pattern.
    plain = engine.generate("ad-r8-all", prompt, SamplingParams(max_tokens=5, return_logits=True, **GREEDY))
    assert (plain.logits[0] - out.logits[0]).abs().max().item() > 1e-3
    assert engine.unload_adapter("patterned")["still_on_disk"] is False
    with pytest.raises(ModelNotFoundError):
        engine.submit("patterned", prompt)


def test_text_stream_stop_strings_across_tokens_and_utf8(make_engine):
    from hub.openlora.detokenize import TextStream

    tok = make_engine(start=False).tokenizer
    text = "Hello wörld 🙂 and the end. More text here"
    ids = tok(text)["input_ids"]
    stream = TextStream(tok, stop=("end.",))
    out = "".join(stream.add(i) for i in ids if not stream.stopped) + stream.flush()
    assert out == "Hello wörld 🙂 and the " and stream.stopped
    plain = TextStream(tok)
    pieces = [plain.add(i) for i in ids]
    assert "".join(pieces) + plain.flush() == text
    assert all("\ufffd" not in p for p in pieces)  # the emoji's bytes come out as one character


def test_kv_pool_grows_and_shrinks_without_changing_results(make_engine):
    engine = make_engine(start=False, kv_initial_len=8)
    assert engine.runner.kv.capacity == 8
    prompts = random_prompts(engine, 6, seed=16, lo=10, hi=30)
    params = SamplingParams(max_tokens=20, return_logits=True, ignore_eos=True, **GREEDY)
    jobs = [(engine.submit(ADAPTERS[i], p, params), ADAPTERS[i], p) for i, p in enumerate(prompts)]
    engine.start()
    for h, a, p in jobs:
        c = h.result()
        tokens, logits = reference(a, tuple(p), 20)
        assert c.token_ids[: len(tokens)] == tokens  # the reference may stop at EOS; ignore_eos keeps going
        assert max((x - y).abs().max().item() for x, y in zip(c.logits, logits, strict=False)) < 1e-4
    deadline = time.time() + 5
    while engine.scheduler.running and time.time() < deadline:
        time.sleep(0.01)
    assert engine.runner.kv.capacity == 8  # memory given back once the long sequences left


def test_prefill_chunks_bound_padding():
    from hub.openlora.runner import padding_chunks

    lengths = sorted([120, 8, 9, 64, 10, 128, 70, 11])  # the scheduler hands prompts over sorted by length
    chunks = padding_chunks(lengths)
    assert [i for c in chunks for i in c] == list(range(len(lengths)))  # contiguous, in order, all of them
    for c in chunks:
        sizes = [lengths[i] for i in c]
        padded = len(sizes) * max(sizes)
        assert padded <= 256 or padded <= 1.3 * sum(sizes)
    assert len(chunks) > 1


def test_bfloat16_engine_runs(make_engine):
    engine = make_engine(dtype="bfloat16", max_slots=4, start=False)
    assert engine.runner.packed is not None  # the start-up check accepts bfloat16 rounding
    params = SamplingParams(max_tokens=4, ignore_eos=True, **GREEDY)
    models = [ADAPTERS[0], ADAPTERS[1], ADAPTERS[6], engine.base_model_id, ADAPTERS[0], ADAPTERS[0]]
    handles = [engine.submit(m, "hello there", params) for m in models]
    engine.start()
    assert all(h.result().completion_tokens == 4 for h in handles)
    assert engine.generate(ADAPTERS[0], "hello", params).completion_tokens == 4
    # On CPU the adapters' slots stay float32 (rank-r products are slow in bf16 there); deltas round into bf16.
    assert engine.runner.lora.layers["model.layers.0.self_attn.q_proj"].A.dtype == torch.float32


@pytest.mark.parametrize("rows", ["uniform", "gathered", "shared", "segments"])
def test_float32_slots_on_a_bfloat16_layer(rows: str) -> None:
    # A bf16 base layer with float32 adapter slots: every delta path gives the float32 result, rounded to bf16.
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(24, 40, bias=False)).to(torch.bfloat16)
    lora = install_lora_layers(model, num_slots=3, max_rank=4, slot_dtype=torch.float32)
    layer = lora.layers["0"]
    adapters = {slot: (torch.randn(4, 24), torch.randn(4, 40)) for slot in range(3)}
    for slot, (a, b_t) in adapters.items():
        lora.load_slot(slot, {"0": (a, b_t)})
    ranks = dict.fromkeys(adapters, 4)
    slots, segments, per_row = {
        "uniform": ([1, 1, 1, 1], (), 1),
        "gathered": ([0, 1, 2, None], (), 1),
        "shared": ([0, 0, 1, 1, None, 0], (), 1),  # few adapters shared by many one-token rows
        "segments": ([0, None], ((3, 2), (2, 1)), 1),  # two decode rows, then two packed prompts
    }[rows]
    tokens = len(slots) * per_row + sum(n for n, _ in segments)
    token_slots = [s for s in slots for _ in range(per_row)] + [s for n, s in segments for _ in range(n)]
    x = torch.randn(tokens, 24).to(torch.bfloat16)
    lora.context.batch = lora.make_batch(slots, ranks, torch.device("cpu"), segments=segments)
    out = model(x)
    base = x.float() @ layer.base.weight.float().T
    deltas = torch.stack(
        [
            (x[i].float() @ adapters[s][0].T @ adapters[s][1]) if s is not None else torch.zeros(40)
            for i, s in enumerate(token_slots)
        ]
    )
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), base + deltas, rtol=2e-2, atol=2e-2 * float(deltas.abs().max()))


@pytest.mark.parametrize(
    ("device", "dtype", "native", "expected"),
    [
        ("cpu", "auto", True, "bfloat16"),  # AMX / AVX512-BF16
        ("cpu", "auto", False, "float32"),
        ("cuda:1", "auto", True, "bfloat16"),
        ("cpu", "float32", True, "float32"),  # an explicit choice stands
    ],
)
def test_serving_dtype(device: str, dtype: str, native: bool, expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    monkeypatch.setattr(hardware, "native_bfloat16", lambda kind: seen.append(kind) or native)
    assert serving_dtype(device, dtype) == expected
    assert seen in ([], [device.split(":")[0]])
