"""The operations of a process_audio task, applied to the mix in order (each its own typed model)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field


class NormalizeOp(BaseModel):
    """Loudness normalisation (ITU BS.1770)."""

    type: Literal["normalize"]
    target_lufs: float = Field(-16.0, ge=-40, le=-5, description="Integrated loudness to reach, LUFS.")


class DenoiseOp(BaseModel):
    """Noise reduction."""

    type: Literal["denoise"]
    strength: Literal["light", "medium", "strong"] = "medium"


class CompressOp(BaseModel):
    """Dynamic range compression."""

    type: Literal["compress"]
    preset: Literal["gentle", "voice", "broadcast"] = "voice"


class EqOp(BaseModel):
    """Equalisation preset."""

    type: Literal["eq"]
    preset: Literal["voice", "warm", "bright", "bass_boost", "telephone"] = "voice"


class TrimSilenceOp(BaseModel):
    """Cut leading and trailing silence."""

    type: Literal["trim_silence"]
    threshold_db: float = Field(-50.0, ge=-90, le=-10, description="Level below which audio is silence, dB.")


AudioOperation = Annotated[
    NormalizeOp | DenoiseOp | CompressOp | EqOp | TrimSilenceOp, Field(discriminator="type")
]
