"""How a character's line should sound: the voice profile document, emotion and pace as prosody, and the
text cut into the sentences the engines speak one at a time."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from taskservice.task_data import HttpUrl

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

    @property
    def prosody(self) -> Prosody:
        """The profile's own rate, pitch and level, applied after emotion and pace."""
        return Prosody(rate=self.rate, pitch=self.pitch, gain_db=self.gain_db)


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
