"""Audio task types on the cpu_intensive queue: generate_character_voice, process_audio and assemble_clip
(a video with tracks mixed under it).

Both follow the media conventions: inputs come through the worker's `InputFetcher` (SSRF guard), results go
through its `MediaPublisher` (storage under `media_key(...)`, then Payload CMS), progress/cancel/soft timeout
are `run_task`'s. Blocking work (synthesis, DSP, ffmpeg) runs in threads via `progress.run_blocking`, one
step at a time, with a cancel check between steps. Result metadata is read back from the written file.
"""

from __future__ import annotations

import functools

from temporalio import activity

from activities.audio.assemble import ClipAssembly
from activities.audio.mix import AudioMix
from activities.audio.tts import SpeechEngines
from activities.audio.voice import CharacterVoice
from activities.resources import WorkerResources
from activities.runtime import TaskActivities, run_task
from taskservice.assemble_data import AssembleClipData
from taskservice.contracts import TaskActivityInput, TaskAttemptResult
from taskservice.task_data import GenerateCharacterVoiceData, ProcessAudioData


class AudioActivities(TaskActivities):
    """The audio activities of a worker, on its shared clients and this process's TTS engines."""

    def __init__(self, resources: WorkerResources) -> None:
        self._settings = resources.settings
        self._engines = SpeechEngines(resources.settings.tts_model, resources.settings.torch_device)
        self._voice = CharacterVoice(
            resources.fetcher, resources.publisher, self._engines, resources.settings.max_audio_input_s
        )
        self._mix = AudioMix(resources.fetcher, resources.publisher, resources.settings)
        self._assembly = ClipAssembly(resources.fetcher, resources.publisher, resources.settings, self._mix)

    def loaded_models(self) -> list[str]:
        return self._engines.loaded()

    async def aclose(self) -> None:
        self._engines.close()

    @activity.defn
    async def generate_character_voice(self, task: TaskActivityInput) -> TaskAttemptResult:
        voice = functools.partial(self._voice.run, task)
        return await run_task(task, GenerateCharacterVoiceData, voice, device=self._settings.torch_device)

    @activity.defn
    async def process_audio(self, task: TaskActivityInput) -> TaskAttemptResult:
        # Mixing is ffmpeg's work, on the CPU whatever the worker's torch device.
        return await run_task(task, ProcessAudioData, functools.partial(self._mix.run, task), device="cpu")

    @activity.defn
    async def assemble_clip(self, task: TaskActivityInput) -> TaskAttemptResult:
        # Mixing and muxing are ffmpeg's work, on the CPU whatever the worker's torch device.
        assemble = functools.partial(self._assembly.run, task)
        return await run_task(task, AssembleClipData, assemble, device="cpu")
