"""OpenLoRA: a multi-adapter LoRA inference server (mixed-adapter batches, continuous batching, OpenAI API)."""

from hub.openlora.config import EngineConfig
from hub.openlora.engine import OpenLoRAEngine
from hub.openlora.sampling import SamplingParams

__all__ = ["EngineConfig", "OpenLoRAEngine", "SamplingParams"]
