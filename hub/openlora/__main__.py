"""`python -m hub.openlora --model-dir DIR --adapters-dir DIR --port N`: the OpenLoRA service (uvicorn, 127.0.0.1).

JupyterHub runs this as a managed service; requests carry hub tokens (see hub/auth.py).
"""

from __future__ import annotations

import argparse
import logging

import torch
import uvicorn

from hub.openlora.api import create_app
from hub.openlora.config import EngineConfig, serving_dtype
from hub.openlora.engine import OpenLoRAEngine


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = EngineConfig()
    p = argparse.ArgumentParser(prog="python -m hub.openlora", description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", required=True, help="base model directory (transformers format)")
    p.add_argument("--adapters-dir", required=True, help="directory with one PEFT adapter directory per id")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--model-name", help="id of the base model in the API (default: the model directory's name)")
    p.add_argument("--price-per-1k", type=float, default=0.0, help="OPEN per 1k tokens for every model")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="auto", help="float32 | bfloat16 | float16 | auto (bf16 where native)")
    p.add_argument("--max-batch-size", type=int, default=d.max_batch_size)
    p.add_argument("--max-slots", type=int, default=d.max_slots, help="adapters resident on the device")
    p.add_argument("--max-lora-rank", type=int, default=d.max_lora_rank)
    p.add_argument("--cpu-cache-mb", type=int, default=d.cpu_cache_bytes >> 20, help="CPU adapter cache budget")
    p.add_argument("--max-seq-len", type=int, default=None)
    p.add_argument("--max-queue", type=int, default=d.max_queue)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--log-level", default="info")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    config = EngineConfig(
        max_batch_size=args.max_batch_size,
        max_slots=args.max_slots,
        max_lora_rank=args.max_lora_rank,
        cpu_cache_bytes=args.cpu_cache_mb << 20,
        max_seq_len=args.max_seq_len,
        max_queue=args.max_queue,
        device=args.device,
        dtype=serving_dtype(args.device, args.dtype),
    )
    engine = OpenLoRAEngine(args.model_dir, adapters_dir=args.adapters_dir, config=config, model_name=args.model_name)
    price = args.price_per_1k
    app = create_app(engine, price_per_1k=lambda _model: price)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    finally:
        engine.close()


if __name__ == "__main__":
    main()
