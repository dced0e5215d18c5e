"""OpenLoRA's CPU matmuls: base weights prepacked for oneDNN give the dense float32 results, in every LoRA delta
mode, and the engine serving with them still matches PEFT's merged models token for token."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hub.openlora import EngineConfig, OpenLoRAEngine, SamplingParams
from hub.openlora.cpu_matmul import PackedLinear, can_prepack
from hub.openlora.lora_batch import install_lora_layers
from tests.test_openlora_engine import ADAPTERS, assert_matches_reference, random_prompts, wait_for_prefetch
from tests.tiny_model import shared_assets

pytestmark = pytest.mark.skipif(not can_prepack(torch.zeros(2, 2)), reason="this PyTorch has no oneDNN (mkldnn)")


@pytest.mark.parametrize("shape", [(1, 24), (19, 24), (3, 7, 24), (0, 24)])
def test_packed_linear_equals_dense_linear(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    w, b = torch.randn(40, 24), torch.randn(40)
    x = torch.randn(*shape)
    torch.testing.assert_close(PackedLinear(w, b)(x), F.linear(x, w, b), rtol=1e-5, atol=1e-5)
    strided = torch.randn(shape[0], 48)[:, ::2] if len(shape) == 2 else None  # a view, as a slice of a step gives
    if strided is not None:
        torch.testing.assert_close(PackedLinear(w, None)(strided), F.linear(strided, w), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows", ["uniform", "gathered", "shared", "segments"])
def test_prepacked_layers_give_the_dense_results_in_every_delta_mode(rows: str) -> None:
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(24, 40), torch.nn.Linear(40, 24, bias=False))
    lora = install_lora_layers(model, num_slots=3, max_rank=4)
    for slot in range(3):
        lora.load_slot(
            slot, {"0": (torch.randn(4, 24), torch.randn(4, 40)), "1": (torch.randn(4, 40), torch.randn(4, 24))}
        )
    ranks = dict.fromkeys(range(3), 4)
    slots, segments = {
        "uniform": ([1, 1, 1, 1], ()),
        "gathered": ([0, 1, 2, None], ()),
        "shared": ([0, 0, 1, 1, None, 0], ()),
        "segments": ([0, None], ((3, 2), (2, 1))),
    }[rows]
    x = torch.randn(len(slots) + sum(n for n, _ in segments), 24)
    lora.context.batch = lora.make_batch(slots, ranks, torch.device("cpu"), segments=segments)
    dense = model(x)
    assert lora.prepack_base_weights() == 2
    packed = model(x)
    torch.testing.assert_close(packed, dense, rtol=1e-5, atol=1e-5)
    # The dense copies are gone (memory does not double); a stray dense matmul would fail loudly, not silently.
    assert all(layer.base.weight.numel() == 0 for layer in lora.layers.values())


def test_bfloat16_weights_stay_dense() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(8, 8)).to(torch.bfloat16)
    lora = install_lora_layers(model, num_slots=1, max_rank=2, slot_dtype=torch.float32)
    assert lora.prepack_base_weights() == 0
    assert lora.layers["0"].packed is None and lora.layers["0"].base.weight.shape == (8, 8)


def test_engine_on_cpu_float32_serves_prepacked_and_matches_peft() -> None:
    model_dir, adapters_dir = shared_assets()
    config = EngineConfig(max_batch_size=16, max_slots=8, max_lora_rank=16, dtype="float32")
    with OpenLoRAEngine(model_dir, adapters_dir=adapters_dir, config=config, start=False) as engine:
        assert all(layer.packed is not None for layer in engine.runner.lora.layers.values())
        assert isinstance(engine.runner._head, PackedLinear)
        prompts = random_prompts(engine, 16, seed=11)
        models = [ADAPTERS[i % len(ADAPTERS)] if i % 5 else engine.base_model_id for i in range(16)]
        params = SamplingParams(max_tokens=5, temperature=0.0, return_logits=True)
        handles = [engine.submit(m, p, params) for m, p in zip(models, prompts, strict=True)]
        wait_for_prefetch(engine, ADAPTERS)
        engine.start()
        for handle, model, prompt in zip(handles, models, prompts, strict=True):
            assert_matches_reference(handle.result(), None if model == engine.base_model_id else model, prompt, 5)
