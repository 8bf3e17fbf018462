"""Speech synthesis engines behind one interface: espeak-ng (the embedded default) and Coqui TTS.

espeak-ng is the system binary, run per sentence through subprocess: no model, works on a fresh machine.
Coqui TTS (package coqui-tts, imported as `TTS`) is used when TTS_MODEL names a model or a local folder with
config.json and a checkpoint; torch and TTS are imported only when that engine is first loaded, so
importing this module stays cheap. A loaded model is kept for the worker's lifetime and shared by its
concurrent activities under a lock (the model object is not re-entrant: pace is set on it per call).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from activities.audio.files import Signal, as_signal
from activities.audio.prosody import Prosody
from activities.model_loads import note_model_load

log = logging.getLogger("taskservice.audio")

EngineName = Literal["espeak-ng", "coqui"]


@dataclass
class SpeechRequest:
    """One sentence to speak, with everything the engine may apply natively."""

    text: str
    voice: str | None
    language: str
    prosody: Prosody = field(default_factory=Prosody)  # its rate, pitch and espeak variant
    speaker_wav: Path | None = None


@dataclass
class Speech:
    signal: Signal  # (frames, 1) float32
    sample_rate: int
    # What the engine already applied, so the DSP chain does not apply it twice.
    applied_rate: bool = False
    applied_pitch: bool = False


class SpeechEngine(Protocol):
    name: EngineName

    @property
    def model(self) -> str: ...

    def synthesize(self, request: SpeechRequest) -> Speech: ...


class EngineUnavailable(Exception):
    """The engine cannot run on this worker (missing binary or model): a configuration problem."""


class UnknownVoice(ValueError):
    """The profile names a voice, speaker or language the engine does not have: bad input."""


# --- espeak-ng ----------------------------------------------------------------------------------------

ESPEAK_BASE_WPM = 165
ESPEAK_BASE_PITCH = 50


class EspeakEngine:
    """The espeak-ng binary: formant synthesis, 22.05 kHz mono, native rate/pitch control."""

    name: EngineName = "espeak-ng"

    def __init__(self) -> None:
        binary = shutil.which("espeak-ng")
        if binary is None:
            raise EngineUnavailable("espeak-ng is not installed (apt-get install espeak-ng)")
        self._binary = binary
        self._voices: frozenset[str] | None = None
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return "espeak-ng"

    def _known_voices(self) -> frozenset[str]:
        with self._lock:
            if self._voices is None:
                names: set[str] = set()
                for listing in ("--voices", "--voices=variant"):
                    out = subprocess.run(
                        [self._binary, listing], capture_output=True, text=True, check=True, timeout=30
                    ).stdout
                    for line in out.splitlines()[1:]:
                        cols = line.split()
                        if len(cols) >= 5:
                            # Language, voice name and file all select a voice; variants go after "+".
                            names.update(c.lower() for c in (cols[1], cols[3], cols[4]))
                            names.add(cols[4].rsplit("/", 1)[-1].lower())
                self._voices = frozenset(names)
            return self._voices

    def resolve_voice(self, voice: str | None, language: str) -> str:
        """The espeak voice for a profile: `voice` if given, else the language; raises UnknownVoice."""
        spec = (voice or language).lower()
        base, _, variant = spec.partition("+")
        known = self._known_voices()
        if base not in known:
            raise UnknownVoice(f"espeak-ng has no voice {base!r}")
        if variant and variant not in known:
            raise UnknownVoice(f"espeak-ng has no voice variant {variant!r}")
        return spec

    def synthesize(self, request: SpeechRequest) -> Speech:
        import soundfile as sf

        voice = self.resolve_voice(request.voice, request.language)
        if request.prosody.espeak_variant and "+" not in voice:
            voice = f"{voice}+{request.prosody.espeak_variant}"
        wpm = int(round(min(450, max(80, ESPEAK_BASE_WPM * request.prosody.rate))))
        # espeak's pitch is 0-99 around 50; ~4 steps per semitone is close over the speech range.
        pitch = int(round(min(99, max(0, ESPEAK_BASE_PITCH + 4 * request.prosody.pitch))))
        with tempfile.TemporaryDirectory(prefix="espeak-") as tmp:
            out = Path(tmp) / "speech.wav"
            # Text goes through stdin, never argv: no option injection, no length limit; SSML stays off.
            proc = subprocess.run(
                [self._binary, "-v", voice, "-s", str(wpm), "-p", str(pitch), "-w", str(out)],
                input=request.text.encode("utf-8"),
                capture_output=True,
                timeout=120,
                check=False,
            )
            if proc.returncode != 0 or not out.exists():
                raise RuntimeError(
                    f"espeak-ng failed ({proc.returncode}): {proc.stderr.decode('utf-8', 'replace')[-300:]}"
                )
            data, rate = sf.read(str(out), dtype="float32", always_2d=True)
        return Speech(
            signal=as_signal(data[:, :1]), sample_rate=int(rate), applied_rate=True, applied_pitch=True
        )


# --- Coqui TTS ----------------------------------------------------------------------------------------

_CHECKPOINT_NAMES = ("model.pth", "model_file.pth", "best_model.pth", "checkpoint.pth", "model.pt")
# Models whose reference-audio argument clones a voice.
_CLONING_CLASSES = frozenset({"Xtts", "Bark", "Tortoise"})


def resolve_local_model(spec: str) -> tuple[Path, Path] | None:
    """(checkpoint, config.json) when TTS_MODEL is a local folder or checkpoint; None for a model name."""
    path = Path(spec).expanduser()
    if path.is_dir():
        config = path / "config.json"
        checkpoints = [path / n for n in _CHECKPOINT_NAMES if (path / n).is_file()]
        checkpoints = checkpoints or sorted(path.glob("*.pth"))
        if not config.is_file() or not checkpoints:
            raise EngineUnavailable(f"TTS_MODEL folder {spec!r} needs config.json and a .pth checkpoint")
        return checkpoints[0], config
    if path.is_file():
        config = path.parent / "config.json"
        if not config.is_file():
            raise EngineUnavailable(f"TTS_MODEL checkpoint {spec!r} has no config.json beside it")
        return path, config
    if "/" not in spec or spec.count("/") != 3:
        # Coqui names look like tts_models/<lang>/<dataset>/<model>; anything else was meant as a path.
        raise EngineUnavailable(f"TTS_MODEL {spec!r} is neither an existing path nor a Coqui model name")
    return None


@dataclass
class CoquiEngine:
    """One loaded Coqui model (`TTS.api.TTS`), reused for every task of the worker."""

    spec: str
    device: str = "auto"
    name: EngineName = "coqui"
    _tts: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def model(self) -> str:
        return self.spec

    def load(self) -> None:
        import torch
        from TTS.api import TTS

        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        local = resolve_local_model(self.spec)
        if local is None:
            tts = TTS(self.spec, progress_bar=False)  # a Coqui model name: downloaded once into its cache
        else:
            checkpoint, config = local
            tts = TTS(model_path=str(checkpoint), config_path=str(config), progress_bar=False)
        self._tts = tts.to(device)
        log.info("Loaded Coqui TTS model", extra={"model": self.spec, "device": device})

    @property
    def _model(self) -> Any:
        return self._tts.synthesizer.tts_model

    @property
    def sample_rate(self) -> int:
        return int(self._tts.synthesizer.output_sample_rate)

    @property
    def clones_voices(self) -> bool:
        model = self._model
        encoder = getattr(getattr(model, "speaker_manager", None), "encoder", None)
        return type(model).__name__ in _CLONING_CLASSES or encoder is not None

    def check(self, voice: str | None, language: str) -> None:
        """Raise UnknownVoice when the profile's speaker or language is not in the model."""
        if self._tts.is_multi_speaker and voice is not None:
            speakers = list(self._tts.speakers or [])
            if speakers and voice not in speakers:
                raise UnknownVoice(
                    f"model {self.spec} has no speaker {voice!r} (has {', '.join(speakers[:20])})"
                )
        if self._tts.is_multi_lingual:
            languages = [str(x).lower() for x in (self._tts.languages or [])]
            if languages and self._language(language) not in languages:
                raise UnknownVoice(
                    f"model {self.spec} has no language {language!r} (has {', '.join(languages)})"
                )

    def _language(self, language: str) -> str:
        languages = [str(x).lower() for x in (self._tts.languages or [])]
        # Profiles say en-us; multilingual models usually list bare codes.
        return language if language in languages else language.split("-", 1)[0]

    def synthesize(self, request: SpeechRequest) -> Speech:
        tts = self._tts
        model = self._model
        kwargs: dict[str, Any] = {"split_sentences": False}
        if tts.is_multi_speaker:
            if request.speaker_wav is not None and self.clones_voices:
                kwargs["speaker_wav"] = str(request.speaker_wav)
            else:
                kwargs["speaker"] = request.voice or (tts.speakers or [None])[0]
        elif request.speaker_wav is not None and self.clones_voices:
            kwargs["speaker_wav"] = str(request.speaker_wav)
        if tts.is_multi_lingual:
            kwargs["language"] = self._language(request.language)
        native_rate = hasattr(model, "length_scale") or type(model).__name__ == "Xtts"
        with self._lock:
            if hasattr(model, "length_scale"):
                # VITS/Glow-TTS: duration = predicted frames x length_scale; slower speech = larger scale.
                saved = model.length_scale
                model.length_scale = saved / request.prosody.rate
                try:
                    wav = tts.tts(request.text, **kwargs)
                finally:
                    model.length_scale = saved
            else:
                if type(model).__name__ == "Xtts":
                    kwargs["speed"] = request.prosody.rate
                wav = tts.tts(request.text, **kwargs)
        # The Synthesizer appends 10 000 zero samples per call; our own pace-scaled gap replaces them.
        signal = as_signal(np.trim_zeros(np.asarray(wav, dtype=np.float32), "b"))
        return Speech(
            signal=signal, sample_rate=self.sample_rate, applied_rate=native_rate, applied_pitch=False
        )


# --- the per-worker engine cache ----------------------------------------------------------------------


class SpeechEngines:
    """Engines of one worker: espeak-ng on demand, the Coqui model loaded once (first use) and kept."""

    def __init__(self, tts_model: str | None, device: str) -> None:
        self._tts_model = tts_model
        self._device = device
        self._lock = threading.Lock()
        self._espeak: EspeakEngine | None = None
        self._coqui: CoquiEngine | None = None

    @property
    def coqui_configured(self) -> str | None:
        return self._tts_model

    def espeak(self) -> EspeakEngine:
        with self._lock:
            if self._espeak is None:
                self._espeak = EspeakEngine()
            return self._espeak

    def coqui(self) -> CoquiEngine:
        """The worker's Coqui model, loading it on first use (blocking: call from a thread)."""
        if self._tts_model is None:
            raise EngineUnavailable("the coqui engine needs TTS_MODEL to be set on the worker")
        if self._coqui is not None:
            return self._coqui
        cold = time.perf_counter()
        try:
            with self._lock:
                if self._coqui is None:
                    engine = CoquiEngine(self._tts_model, self._device)
                    engine.load()
                    self._coqui = engine
                return self._coqui
        finally:
            note_model_load(time.perf_counter() - cold)

    def loaded(self) -> list[str]:
        return [f"coqui:{self._coqui.spec}"] if self._coqui is not None else []

    def close(self) -> None:
        with self._lock:
            self._coqui = None
