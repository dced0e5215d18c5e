"""Published fine-tuned models: the platform's models API (`/services/platform/api/models`), their files in the blob
store, their ModelRegistry records through the relay, and the adapter catalog the OpenLoRA service reads."""
