"""The prompts media tasks give their pipelines: the task's own text, then what it says of the scene."""

from __future__ import annotations

from taskservice.task_data import GenerateImageData, GenerateVideoData, RenderAnimationData


def join_prompt(*parts: str | None, sep: str = ", ") -> str:
    """A prompt of the parts that are set."""
    return sep.join(part for part in parts if part)


def labelled(label: str, value: str | None) -> str | None:
    return f"{label}: {value}" if value else None


def compose_image_prompt(data: GenerateImageData) -> str:
    character = data.character_id and f"character {data.character_id}"
    pose, lighting = labelled("pose", data.pose), labelled("lighting", data.lighting)
    return join_prompt(data.prompt.strip(), character, pose, lighting)


def compose_video_prompt(data: GenerateVideoData) -> str:
    people = [
        join_prompt(p.character_id, p.position and f"at {p.position}", p.action, sep=" ")
        for p in data.character_positions
    ]
    camera, lighting = labelled("camera", data.camera_angle), labelled("lighting", data.lighting)
    return join_prompt(data.scene_description.strip(), camera, lighting, *people)


def compose_animation_prompt(data: RenderAnimationData) -> str:
    action = data.action.strip()
    return join_prompt(join_prompt(data.character_id, action, sep=" "), data.style and f"{data.style} style")
