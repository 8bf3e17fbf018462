"""Build tiny, randomly initialised diffusers pipelines from configs, offline, for tests and `make dev`.

    python scripts/build_tiny_models.py --out data/models

writes `tiny-sd` (StableDiffusionPipeline; the img2img path loads the same folder), `tiny-video`
(TextToVideoSDPipeline with a tiny UNet3DConditionModel), `tiny-animatediff` (AnimateDiffPipeline with a
tiny MotionAdapter), `tiny-blip` (a transformers BlipForConditionalGeneration captioning model saved with
its BlipProcessor: image processor + a word-level BERT tokenizer) and `tiny-taesd` (an AutoencoderTiny of
their latent space: the preview decoder). Their outputs are noise, but they are the
real pipeline and model classes, so the service's code paths (loading, callbacks, interrupt, from_pipe,
decoding, `generate`) run unchanged. Builds are seeded (reproducible) and idempotent: a folder that already
has its marker file (model_index.json for pipelines, processor_config.json for tiny-blip) is skipped.

`--sd-size` builds a Stable-Diffusion-1.5-sized pipeline (same architecture, random weights, ~1 B params) for
GPU throughput benchmarks; it is only saved when `--save-sd-size` is given (it is ~4 GB in fp32).
"""

from __future__ import annotations

import argparse
import json
import string
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from taskservice.logs import silence_model_build_notices

SEED = 0
TEXT_MAX_LENGTH = 32


def _tokenizer(workdir: Path) -> Any:
    """A CLIP tokenizer over a hand-written vocab: special tokens, and characters with and without `</w>`."""
    from transformers import CLIPTokenizer

    symbols = list(string.ascii_lowercase + string.digits + ".,'-!?")
    tokens = ["<|startoftext|>", "<|endoftext|>"] + symbols + [s + "</w>" for s in symbols]
    vocab = {token: i for i, token in enumerate(tokens)}
    (workdir / "vocab.json").write_text(json.dumps(vocab))
    # No merges: words split into characters, which is all a random text encoder needs.
    (workdir / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(
        str(workdir / "vocab.json"),
        str(workdir / "merges.txt"),
        model_max_length=TEXT_MAX_LENGTH,
        pad_token="<|endoftext|>",
    )


def _text_encoder(vocab_size: int) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=TEXT_MAX_LENGTH,
        projection_dim=32,
        vocab_size=vocab_size,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return CLIPTextModel(config).eval()


def _vae() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=32,
        sample_size=32,
    )


def _scheduler() -> Any:
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def _seed() -> None:
    import torch

    torch.manual_seed(SEED)


def build_tiny_sd(workdir: Path) -> Any:
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    _seed()
    tokenizer = _tokenizer(workdir)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    return StableDiffusionPipeline(
        vae=_vae(),
        text_encoder=_text_encoder(len(tokenizer.get_vocab())),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )


def build_tiny_video(workdir: Path) -> Any:
    """TextToVideoSDPipeline kept small: one cross-attention level, 16 channels, tiny heads."""
    from diffusers import TextToVideoSDPipeline, UNet3DConditionModel

    _seed()
    tokenizer = _tokenizer(workdir)
    unet = UNet3DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    return TextToVideoSDPipeline(
        vae=_vae(),
        text_encoder=_text_encoder(len(tokenizer.get_vocab())),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=_scheduler(),
    )


def build_tiny_animatediff(workdir: Path) -> Any:
    from diffusers import AnimateDiffPipeline, MotionAdapter, UNet2DConditionModel

    _seed()
    tokenizer = _tokenizer(workdir)
    # Half the channels and layers of the ml.md recipe: 8 frames at 64x64, 2 steps in ~1 s on CPU.
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=2,
    )
    adapter = MotionAdapter(
        block_out_channels=(16, 32),
        motion_layers_per_block=1,
        motion_norm_num_groups=2,
        motion_num_attention_heads=2,
    )
    return AnimateDiffPipeline(
        vae=_vae(),
        text_encoder=_text_encoder(len(tokenizer.get_vocab())),
        tokenizer=tokenizer,
        unet=unet,
        motion_adapter=adapter,
        scheduler=_scheduler(),
        feature_extractor=None,
        image_encoder=None,
    )


# Words of the captioning tokenizer: a random model picks among them, so its captions read as words.
CAPTION_WORDS = (
    "a an the of on in with and at by near two red green blue black white small large old young photo "
    "picture painting drawing portrait cat dog fox bird horse man woman child detective alley street city "
    "room table window sky sea tree field sitting standing walking running holding wearing looking dark "
    "light night day rain hat coat"
).split()


class _SavedTogether:
    """A model and its processor saved in one folder, as hub checkpoints are (one `from_pretrained` path)."""

    def __init__(self, *parts: Any) -> None:
        self._parts = parts

    def save_pretrained(self, path: Path) -> None:
        for part in self._parts:
            part.save_pretrained(path)


def build_tiny_blip(workdir: Path) -> Any:
    """BLIP image captioning (what Salesforce/blip-image-captioning-* are), ~50 k parameters, 32x32 input.

    transformers' AutoProcessor + AutoModelForImageTextToText load it like the real checkpoints; both
    unconditional and prompt-conditioned captioning work.
    """
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessorPil,  # the PIL backend: torchvision is not installed
        BlipProcessor,
    )

    _seed()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
    letters = list(string.ascii_lowercase + string.digits)
    # Words, then single characters and `##` continuations so any prompt still tokenizes (no [UNK] soup).
    tokens = special + CAPTION_WORDS + letters + ["##" + c for c in letters] + list(".,'-!?")
    (workdir / "vocab.txt").write_text("\n".join(dict.fromkeys(tokens)) + "\n")
    tokenizer = BertTokenizer(
        str(workdir / "vocab.txt"), do_lower_case=True, bos_token="[DEC]", model_max_length=512
    )
    processor = BlipProcessor(
        image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tokenizer
    )
    config = BlipConfig(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 8,
            "projection_dim": 32,
        },
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 512,
            "encoder_hidden_size": 32,
            "bos_token_id": tokenizer.bos_token_id,
            "sep_token_id": tokenizer.sep_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.sep_token_id,
        },
        projection_dim=32,
    )
    return _SavedTogether(BlipForConditionalGeneration(config).eval(), processor)


def build_tiny_taesd(workdir: Path) -> Any:
    """A tiny AutoencoderTiny (the TAESD family: the service's preview decoder) of the tiny pipelines' latent
    space: 4 latent channels, 2x spatial scale like their AutoencoderKL."""
    from diffusers import AutoencoderTiny

    _seed()
    return AutoencoderTiny(
        in_channels=3,
        out_channels=3,
        encoder_block_out_channels=(16, 16),
        decoder_block_out_channels=(16, 16),
        num_encoder_blocks=(1, 1),
        num_decoder_blocks=(1, 1),
        latent_channels=4,
    ).eval()


def build_sd15_sized() -> Any:
    """Stable Diffusion 1.5's architecture (UNet 860 M, CLIP ViT-L text encoder, VAE) with random weights.

    The tokenizer is the tiny character vocab: the text encoder's cost does not depend on the vocabulary.
    """
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    _seed()
    workdir = Path(tempfile.mkdtemp(prefix="sd15-tokenizer-"))
    tokenizer = _tokenizer(workdir)
    tokenizer.model_max_length = 77
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            projection_dim=768,
            vocab_size=len(tokenizer.get_vocab()),
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_act="quick_gelu",
        )
    ).eval()
    unet = UNet2DConditionModel(
        sample_size=64,
        cross_attention_dim=768,
        attention_head_dim=8,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
    )
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )


BUILDERS = {
    "tiny-sd": build_tiny_sd,
    "tiny-video": build_tiny_video,
    "tiny-animatediff": build_tiny_animatediff,
    "tiny-blip": build_tiny_blip,
    "tiny-taesd": build_tiny_taesd,
}
# The file that marks a finished build; diffusers pipelines write model_index.json.
COMPLETE_MARKER = {"tiny-blip": "processor_config.json", "tiny-taesd": "config.json"}


def build_all(out: Path, *, names: list[str] | None = None) -> dict[str, Path]:
    """Build every tiny model missing under `out`; returns name → folder. Safe to call concurrently-ish:
    each model is saved into a temp folder and renamed into place."""
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    folders: dict[str, Path] = {}
    for name in names or list(BUILDERS):
        target = out / name
        folders[name] = target
        if (target / COMPLETE_MARKER.get(name, "model_index.json")).exists():
            continue
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=out, prefix=f".{name}.") as tmp:
            pipe = BUILDERS[name](Path(tmp))
            staging = Path(tmp) / "pipeline"
            pipe.save_pretrained(staging)
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        print(f"built {name} in {time.perf_counter() - started:.1f}s -> {target}", file=sys.stderr)
    return folders


def main() -> None:
    silence_model_build_notices()  # what the libraries say about random tiny models means nothing
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("data/models"), help="Folder of the built models.")
    parser.add_argument("--only", action="append", choices=sorted(BUILDERS), help="Build just these.")
    parser.add_argument("--sd-size", action="store_true", help="Also build an SD-1.5-sized random pipeline.")
    parser.add_argument("--save-sd-size", action="store_true", help="Save it to OUT/sd15-random (~4 GB).")
    args = parser.parse_args()
    for name, folder in build_all(args.out, names=args.only).items():
        print(f"{name}: {folder}")
    if args.sd_size:
        pipe = build_sd15_sized()
        params = sum(p.numel() for p in pipe.unet.parameters())
        print(f"sd15-random: UNet {params / 1e6:.0f} M parameters")
        if args.save_sd_size:
            target = args.out / "sd15-random"
            if not (target / "model_index.json").exists():
                pipe.save_pretrained(target)
            print(f"sd15-random: {target}")


if __name__ == "__main__":
    main()
