"""Stable-Diffusion-1.5-sized and SDXL-sized text-to-image pipelines with random weights, built from their
architectures' configs (no download), for GPU throughput benchmarks: speed does not depend on the weights.

Built on the target device (random init on a GPU takes seconds, on a CPU minutes), saved in fp16 safetensors
and loaded back by the service with `from_pretrained`, as a real checkpoint is. `scale` < 1 shrinks every
width (for a smoke run of this code on a CPU); 1 is the real architecture.
"""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path
from typing import Any

TEXT_LENGTH = 77


def _tokenizer() -> Any:
    """CLIP's tokenizer over a character vocabulary: the text encoder's cost does not depend on the vocab."""
    from transformers import CLIPTokenizer

    folder = Path(tempfile.mkdtemp(prefix="bench-tokenizer-"))
    symbols = list(string.ascii_lowercase + string.digits + ".,'-!?")
    tokens = ["<|startoftext|>", "<|endoftext|>"] + symbols + [s + "</w>" for s in symbols]
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(
        str(folder / "vocab.json"),
        str(folder / "merges.txt"),
        model_max_length=TEXT_LENGTH,
        pad_token="<|endoftext|>",
    )


def _width(channels: int, scale: float, multiple: int = 32) -> int:
    return max(multiple, int(channels * scale) // multiple * multiple)


def _text_encoder(hidden: int, layers: int, heads: int, scale: float, *, projection: bool) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    hidden = _width(hidden, scale, heads * 8 if scale < 1 else 64)
    config = CLIPTextConfig(
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=max(1, round(layers * scale)),
        num_attention_heads=heads,
        max_position_embeddings=TEXT_LENGTH,
        projection_dim=hidden,
        vocab_size=len(_tokenizer().get_vocab()),
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_act="quick_gelu" if not projection else "gelu",
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def _vae(scale: float, sample_size: int) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=tuple(_width(c, scale) for c in (128, 256, 512, 512)),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=sample_size,
    )


def _scheduler() -> Any:
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
    )


def sd15_sized(scale: float = 1.0) -> Any:
    """SD 1.5: UNet of 860 M parameters, CLIP ViT-L/14 text encoder, the SD VAE."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    text_encoder = _text_encoder(768, 12, 12, scale, projection=False)
    unet = UNet2DConditionModel(
        sample_size=64,
        cross_attention_dim=text_encoder.config.hidden_size,
        attention_head_dim=8,
        block_out_channels=tuple(_width(c, scale) for c in (320, 640, 1280, 1280)),
        layers_per_block=2,
    )
    return StableDiffusionPipeline(
        vae=_vae(scale, 512),
        text_encoder=text_encoder,
        tokenizer=_tokenizer(),
        unet=unet,
        scheduler=_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )


def sdxl_sized(scale: float = 1.0) -> Any:
    """SDXL base: UNet of 2.6 B parameters (10 transformer blocks at the lowest level), CLIP ViT-L and
    OpenCLIP bigG text encoders, the SDXL VAE (upcast to fp32 for decoding, as the real one is)."""
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

    text_encoder = _text_encoder(768, 12, 12, scale, projection=False)
    text_encoder_2 = _text_encoder(1280, 32, 20, scale, projection=True)
    context = text_encoder.config.hidden_size + text_encoder_2.config.hidden_size
    unet = UNet2DConditionModel(
        sample_size=128,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=tuple(_width(c, scale, 64) for c in (320, 640, 1280)),
        layers_per_block=2,
        transformer_layers_per_block=(1, max(1, round(2 * scale)), max(1, round(10 * scale))),
        attention_head_dim=(5, 10, 20),
        cross_attention_dim=context,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=6 * 256 + text_encoder_2.config.projection_dim,
    )
    vae = _vae(scale, 1024)
    vae.register_to_config(scaling_factor=0.13025)
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=_tokenizer(),
        tokenizer_2=_tokenizer(),
        unet=unet,
        scheduler=_scheduler(),
    )


BUILDERS = {"sd15": sd15_sized, "sdxl": sdxl_sized}


def build(name: str, folder: Path, *, device: str, scale: float = 1.0) -> Path:
    """Build `name` on `device` and save it in fp16 (once: an existing folder is reused); its folder."""
    import torch

    if (folder / "model_index.json").exists():
        return folder
    torch.manual_seed(0)
    with torch.device(device):
        pipe = BUILDERS[name](scale)
    pipe.to(torch.float16).save_pretrained(folder)
    del pipe
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return folder
