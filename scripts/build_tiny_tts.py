"""Build a tiny, randomly initialised Coqui VITS model offline (config.json + model.pth) for tests and dev.

Its output is noise, but it is a real `TTS.tts.models.vits.Vits` saved the way a trained local model is,
so `TTS(model_path=..., config_path=...)` loads it exactly like one: the Coqui path runs end to end with no
download. Usage: `python scripts/build_tiny_tts.py [--out DIR] [--force]` (default data/models/tiny-vits);
a folder that already holds config.json and model.pth is left as it is unless --force.
"""

from __future__ import annotations

import argparse
import math
import string
import sys
from pathlib import Path

from taskservice.logs import silence_model_build_notices

DEFAULT_OUT = Path("data/models/tiny-vits")


def build(out_dir: Path, *, seed: int = 0) -> Path:
    """Write config.json and model.pth into `out_dir` and return the folder."""
    import torch
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.configs.vits_config import VitsConfig
    from TTS.tts.models.vits import Vits, VitsArgs

    torch.manual_seed(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = VitsConfig(
        # Characters, not phonemes: no phonemizer (espeak) is needed to load or run the model.
        use_phonemes=False,
        text_cleaner="basic_cleaners",
        characters=CharactersConfig(
            characters_class="TTS.tts.models.vits.VitsCharacters",
            pad="<PAD>",
            eos="<EOS>",
            bos="<BOS>",
            blank="<BLNK>",
            characters=string.ascii_lowercase + string.ascii_uppercase + string.digits,
            punctuations="!'(),-.:;? \"",
            phonemes=None,
        ),
        audio=BaseAudioConfig(
            sample_rate=22050,
            hop_length=256,
            win_length=1024,
            fft_size=1024,
            num_mels=80,
            # Noise has no silence to trim; trimming it would make lengths arbitrary.
            do_trim_silence=False,
        ),
        model_args=VitsArgs(
            hidden_channels=32,
            hidden_channels_ffn_text_encoder=64,
            num_heads_text_encoder=2,
            num_layers_text_encoder=2,
            kernel_size_text_encoder=3,
            dropout_p_text_encoder=0.0,
            out_channels=513,
            kernel_size_posterior_encoder=5,
            num_layers_posterior_encoder=2,
            num_layers_flow=1,
            resblock_type_decoder="2",
            resblock_kernel_sizes_decoder=[3],
            resblock_dilation_sizes_decoder=[[1, 3]],
            upsample_rates_decoder=[8, 8, 4],
            upsample_initial_channel_decoder=32,
            upsample_kernel_sizes_decoder=[16, 16, 8],
            use_sdp=False,
            # Inference never uses the GAN discriminator; leaving it out keeps the checkpoint ~1 MB.
            init_discriminator=False,
        ),
        test_sentences=[],
    )
    model = Vits(config)
    # Random weights predict near-zero durations (one frame per token), which `length_scale` (pace) cannot
    # stretch; bias the duration predictor to ~3 frames per token (VITS puts a blank between characters, so
    # ~70 ms per character) so lengths look like speech and pace takes effect.
    with torch.no_grad():
        model.duration_predictor.proj.weight.mul_(0.01)
        model.duration_predictor.proj.bias.fill_(math.log(3.0))
    model.eval()
    torch.save({"model": model.state_dict(), "config": config.to_dict()}, out_dir / "model.pth")
    config.save_json(str(out_dir / "config.json"))
    return out_dir


def main(argv: list[str] | None = None) -> int:
    silence_model_build_notices()  # what the libraries say about random tiny models means nothing
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("out_dir", nargs="?", type=Path, default=None, help="same as --out")
    parser.add_argument("--out", type=Path, default=None, help=f"target folder (default {DEFAULT_OUT})")
    parser.add_argument("--force", action="store_true", help="rebuild even if the folder has a model")
    args = parser.parse_args(argv)
    folder: Path = args.out or args.out_dir or DEFAULT_OUT
    if not args.force and (folder / "config.json").is_file() and (folder / "model.pth").is_file():
        print(f"tiny VITS already in {folder}")
        return 0
    build(folder)
    size = sum(p.stat().st_size for p in folder.iterdir())
    print(f"tiny VITS written to {folder} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
