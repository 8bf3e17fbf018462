"""Images, videos, animations and captions on diffusers/transformers pipelines (gpu_medium, gpu_heavy)."""
