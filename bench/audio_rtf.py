"""Speed of the audio task types on this machine.

Prints the real-time factor (synthesis seconds per second of speech; < 1 is faster than real time) of each
speech engine, espeak-ng and the tiny random Coqui VITS (built on the fly; a real model is far slower), the
full generate_character_voice render (synthesis + DSP + encode), and process_audio's processing time per
minute of audio for a typical mix. Nothing is downloaded.

    python bench/audio_rtf.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from activities.audio import files as audio_io  # noqa: E402
from activities.audio.activities import AudioActivities  # noqa: E402
from activities.audio.prosody import split_sentences  # noqa: E402
from activities.audio.tts import CoquiEngine, EspeakEngine, SpeechRequest  # noqa: E402
from activities.resources import WorkerResources  # noqa: E402
from taskservice.contracts import TaskActivityInput  # noqa: E402
from taskservice.settings import Settings  # noqa: E402
from tests.support.scripts import load_script  # noqa: E402

TEXT = (
    "I've been expecting you, detective. The rain hasn't stopped for three days, and neither have I. "
    "Sit down. You look like a man who has walked a long way to ask a short question. "
    "Ask it, then, before the coffee goes cold and my patience with it."
)


def _best(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def bench_engine(engine: EspeakEngine | CoquiEngine, repeats: int) -> tuple[float, float]:
    sentences = split_sentences(TEXT)

    def speak() -> float:
        total = 0.0
        for sentence in sentences:
            speech = engine.synthesize(SpeechRequest(text=sentence, voice=None, language="en"))
            total += len(speech.signal) / speech.sample_rate
        return total

    speak()  # warm-up: first torch call, espeak voice data in page cache
    elapsed, audio_s = _best(speak, repeats)
    return elapsed / audio_s, audio_s


def _tiny_model(folder: Path) -> Path:
    result: Path = load_script("build_tiny_tts").build(folder)
    return result


async def bench_activities(tmp: Path, model: Path, repeats: int) -> dict[str, float]:
    from temporalio.testing import ActivityEnvironment

    out: dict[str, float] = {}
    # Inputs for process_audio: a 60 s stereo music-like bed (mp3) and a 50 s mono dialogue-like track (wav).
    rate = 44100
    t = np.arange(60 * rate) / rate
    rng = np.random.default_rng(0)
    bed = 0.1 * np.stack([np.sin(2 * math.pi * 110 * t), np.sin(2 * math.pi * 165 * t)], axis=1)
    bed += 0.02 * rng.standard_normal(bed.shape)
    dialogue = (
        0.2 * np.sin(2 * math.pi * 220 * t[: 50 * rate]) * (np.sin(2 * math.pi * 0.5 * t[: 50 * rate]) > 0)
    )
    audio_io.encode(audio_io.as_signal(bed.astype(np.float32)), rate, "mp3", tmp / "bed.mp3")
    audio_io.encode(audio_io.as_signal(dialogue.astype(np.float32)), rate, "wav", tmp / "dialogue.wav")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(tmp)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    for label, tts_model in (("espeak-ng", None), ("tiny-vits", str(model))):
        settings = Settings(allow_private_urls=True, data_dir=tmp / "data", tts_model=tts_model)
        resources = WorkerResources.open(settings)
        acts = AudioActivities(resources)
        data = {
            "text": TEXT,
            "emotion": "mysterious",
            "pace": "normal",
            "background_noise": "rain",
            "output_format": "mp3",
            "sample_rate": 44100,
        }
        times, duration = [], 0.0
        for i in range(repeats + 1):
            start = time.perf_counter()
            result = await ActivityEnvironment().run(
                acts.generate_character_voice,
                TaskActivityInput(f"bench-voice-{label}-{i}", "bench", "generate_character_voice", data, 600),
            )
            if i:  # the first run loads the model
                times.append(time.perf_counter() - start)
            duration = result.result["metadata"]["duration"]
        out[f"generate_character_voice[{label}] RTF (whole task)"] = min(times) / duration
        await acts.aclose()
        await resources.aclose()

    resources = WorkerResources.open(Settings(allow_private_urls=True, data_dir=tmp / "data"))
    acts = AudioActivities(resources)
    mix = {
        "tracks": [
            {"url": f"{base}/bed.mp3", "gain_db": -12, "fade_in_s": 2, "fade_out_s": 3},
            {"url": f"{base}/dialogue.wav", "offset_s": 5},
        ],
        "operations": ["denoise", "eq", "compress", "normalize"],
        "output_format": "mp3",
        "sample_rate": 48000,
    }
    times = []
    minutes = 1.0
    for i in range(repeats):
        start = time.perf_counter()
        result = await ActivityEnvironment().run(
            acts.process_audio, TaskActivityInput(f"bench-mix-{i}", "bench", "process_audio", mix, 600)
        )
        times.append(time.perf_counter() - start)
        minutes = result.result["metadata"]["duration"] / 60
    out["process_audio s per minute of audio (2 tracks, denoise+eq+compress+normalize, mp3)"] = (
        min(times) / minutes
    )
    await acts.aclose()
    await resources.aclose()
    server.shutdown()
    return out


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import os

    print(f"CPU cores: {os.cpu_count()}; timings are the best of {args.repeats}")
    with tempfile.TemporaryDirectory(prefix="audio-bench-") as tmp_name:
        tmp = Path(tmp_name)
        model = _tiny_model(tmp / "tiny-vits")
        coqui = CoquiEngine(str(model))
        coqui.load()
        for name, engine in (("espeak-ng", EspeakEngine()), ("coqui tiny VITS", coqui)):
            rtf, audio_s = bench_engine(engine, args.repeats)
            print(f"synthesis RTF  {name:<18} {rtf:7.4f}  ({audio_s:.1f} s of speech, {len(TEXT)} chars)")
        for label, value in asyncio.run(bench_activities(tmp, model, args.repeats)).items():
            print(f"{label}: {value:.4f}")
    print("(RTF = processing seconds / audio seconds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
