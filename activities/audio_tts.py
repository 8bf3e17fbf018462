"""Speech synthesis engines behind one interface: espeak-ng (the embedded default) and Coqui TTS.

espeak-ng is the system binary, run per sentence through subprocess: no model, works on a fresh machine.
Coqui TTS (package coqui-tts, imported as `TTS`) is used when TTS_MODEL names a model or a local folder with
config.json and a checkpoint; torch and TTS are imported only when that engine is first loaded, so
importing this module stays cheap. A loaded model is kept for the worker's lifetime and shared by its
concurrent activities under a lock (the model object is not re-entrant: pace is set on it per call).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from activities.audio_dsp import Signal, as_signal
from taskservice.task_data import HttpUrl

log = logging.getLogger("taskservice.audio")

EngineName = Literal["espeak-ng", "coqui"]
# espeak voice names: language codes, paths like "gmw/en-US" and "+variant" suffixes; never a leading "-"
# (it would be read as an option).
_VOICE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./+\-]{0,63}$")


class VoiceProfile(BaseModel):
    """The JSON document `character_voice_profile` points at (see docs/audio.md)."""

    # Unknown keys are refused: a misspelt `pich` silently ignored would ship the wrong voice.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    version: Literal[1] = 1
    name: str | None = Field(None, max_length=200, description="Who this voice is; informational.")
    character_id: str | None = Field(None, max_length=200, description="Informational.")
    description: str | None = Field(None, max_length=2000, description="Informational.")
    engine: Literal["auto", "espeak-ng", "coqui"] = Field(
        "auto", description="`auto`: Coqui when the worker has TTS_MODEL, else espeak-ng."
    )
    model: str | None = Field(
        None,
        max_length=500,
        description="Coqui model the profile was made for; must be the worker's TTS_MODEL.",
    )
    voice: str | None = Field(
        None,
        max_length=64,
        description="espeak-ng voice (`en-us`, `en-gb+f3`) or a speaker name of a multi-speaker Coqui model.",
    )
    language: str = Field("en", min_length=2, max_length=16, description="Language code, e.g. en, en-us, fr.")
    speaker_reference_url: HttpUrl | None = Field(
        None, description="Reference recording for voice-cloning / multi-speaker Coqui models."
    )
    pitch: float = Field(0.0, ge=-12, le=12, description="Pitch shift in semitones.")
    rate: float = Field(
        1.0, ge=0.5, le=2.0, description="Speaking-rate multiplier (1 = the engine's normal)."
    )
    gain_db: float = Field(0.0, ge=-24, le=12, alias="gain", description="Level change in dB.")

    @field_validator("language")
    @classmethod
    def _language_code(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*", value):
            raise ValueError("must be a language code such as en, en-us or pt-br")
        return value.lower().replace("_", "-")

    @field_validator("voice")
    @classmethod
    def _voice_name(cls, value: str | None) -> str | None:
        if value is not None and not _VOICE_NAME.match(value):
            raise ValueError("must be a voice name of letters, digits and . _ / + - (not starting with -)")
        return value

    @model_validator(mode="after")
    def _espeak_has_no_model(self) -> VoiceProfile:
        if self.engine == "espeak-ng" and self.model:
            raise ValueError("`model` applies to the coqui engine only")
        return self


@dataclass(frozen=True)
class Prosody:
    """How an emotion or pace changes the voice; rates multiply, semitones and dB add."""

    rate: float = 1.0  # speaking-rate multiplier
    pitch: float = 0.0  # semitones
    gain_db: float = 0.0  # energy
    # ffmpeg filters that colour the voice (brightness, tremble, breath, space); applied for every engine.
    colour: str = ""
    espeak_variant: str | None = None  # espeak-ng's own voice variant, where one fits (whisper)

    def then(self, other: Prosody) -> Prosody:
        return Prosody(
            rate=self.rate * other.rate,
            pitch=self.pitch + other.pitch,
            gain_db=self.gain_db + other.gain_db,
            colour=",".join(c for c in (self.colour, other.colour) if c),
            espeak_variant=other.espeak_variant or self.espeak_variant,
        )


EMOTIONS: dict[str, Prosody] = {
    "neutral": Prosody(),
    "happy": Prosody(rate=1.08, pitch=2.0, gain_db=2.0, colour="equalizer=f=3000:t=q:w=1:g=3"),
    "sad": Prosody(
        rate=0.85, pitch=-2.0, gain_db=-4.0, colour="lowpass=f=4500,equalizer=f=3000:t=q:w=1:g=-3"
    ),
    "angry": Prosody(
        rate=1.1,
        pitch=1.0,
        gain_db=5.0,
        colour="equalizer=f=2500:t=q:w=1:g=5,acompressor=threshold=0.1:ratio=4:attack=2:release=60:makeup=2",
    ),
    "fearful": Prosody(rate=1.15, pitch=3.0, gain_db=-2.0, colour="vibrato=f=6:d=0.25,tremolo=f=5:d=0.2"),
    "surprised": Prosody(rate=1.05, pitch=4.0, gain_db=3.0, colour="equalizer=f=3500:t=q:w=1:g=2"),
    "mysterious": Prosody(
        rate=0.88, pitch=-3.0, gain_db=-5.0, colour="lowpass=f=6000,aecho=0.8:0.7:70|140:0.25|0.15"
    ),
    "calm": Prosody(rate=0.9, pitch=-1.0, gain_db=-3.0, colour="lowpass=f=7000"),
    "excited": Prosody(rate=1.2, pitch=3.0, gain_db=4.0, colour="equalizer=f=3000:t=q:w=1:g=4"),
    "whisper": Prosody(
        rate=0.92,
        gain_db=-10.0,
        colour="highpass=f=250,equalizer=f=4000:t=q:w=1:g=4",
        espeak_variant="whisper",
    ),
}
PACES: dict[str, Prosody] = {
    "slow": Prosody(rate=0.75),
    "normal": Prosody(),
    "fast": Prosody(rate=1.3),
}


@dataclass
class SpeechRequest:
    """One sentence to speak, with everything the engine may apply natively."""

    text: str
    voice: str | None
    language: str
    rate: float
    pitch: float
    espeak_variant: str | None = None
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
        if request.espeak_variant and "+" not in voice:
            voice = f"{voice}+{request.espeak_variant}"
        wpm = int(round(min(450, max(80, ESPEAK_BASE_WPM * request.rate))))
        # espeak's pitch is 0-99 around 50; ~4 steps per semitone is close over the speech range.
        pitch = int(round(min(99, max(0, ESPEAK_BASE_PITCH + 4 * request.pitch))))
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
                model.length_scale = saved / request.rate
                try:
                    wav = tts.tts(request.text, **kwargs)
                finally:
                    model.length_scale = saved
            else:
                if type(model).__name__ == "Xtts":
                    kwargs["speed"] = request.rate
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
        with self._lock:
            if self._coqui is None:
                engine = CoquiEngine(self._tts_model, self._device)
                engine.load()
                self._coqui = engine
            return self._coqui

    def loaded(self) -> list[str]:
        return [f"coqui:{self._coqui.spec}"] if self._coqui is not None else []

    def close(self) -> None:
        with self._lock:
            self._coqui = None


def split_sentences(text: str, max_chars: int = 300) -> list[str]:
    """Sentences (split after . ! ? … and at line breaks); long ones cut at commas or spaces."""
    # Two fixed-width lookbehinds: a closing quote or bracket stays with its sentence.
    pieces = re.split(r"(?<=[.!?…])\s+|(?<=[.!?…][\"'”’)\]])\s+|\n", text.strip())
    sentences: list[str] = []
    for piece in (p.strip() for p in pieces):
        while len(piece) > max_chars:
            cut = max(piece.rfind(mark, 0, max_chars) for mark in (", ", "; ", ": ", " — "))
            if cut <= max_chars // 3:
                cut = piece.rfind(" ", 0, max_chars)
            if cut <= 0:
                cut = max_chars
            sentences.append(piece[: cut + 1].strip())
            piece = piece[cut + 1 :].strip()
        if piece and re.search(r"\w", piece):
            sentences.append(piece)
    return sentences
