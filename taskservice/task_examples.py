"""One example `task_data` per task type, shown in the OpenAPI document (schemas and the submit examples).

Where seed 001 gives one, it is the seed's own (`SEED_EXAMPLES`); the others are written for this service.
tests/test_openapi.py checks that each passes its type's validation.
"""

from __future__ import annotations

from typing import Any

# Seed 001's "Task Type Specifications" and its Aladdin section, verbatim.
SEED_EXAMPLES: dict[str, dict[str, Any]] = {
    "generate_video": {
        "storyboard_images": ["https://media.ft.tc/storyboard1.jpg"],
        "scene_description": "Detective walks through rain-soaked alley",
        "camera_angle": "wide_shot",
        "lighting": "dramatic_noir",
        "character_positions": [
            {"character_id": "detective_jones", "position": "center_frame", "action": "walking_slowly"}
        ],
        "duration": 7,
        "fps": 24,
        "resolution": "1920x1080",
    },
    "generate_image": {
        "prompt": "1920s detective in film noir style, wearing trench coat",
        "style_guide": "https://media.ft.tc/style_guide.jpg",
        "reference_images": ["https://media.ft.tc/ref1.jpg"],
        "character_id": "detective_jones",
        "pose": "standing_confident",
        "lighting": "dramatic_shadow",
        "resolution": "1024x1024",
        "quality": "high",
    },
    "generate_character_voice": {
        "text": "I've been expecting you, detective.",
        "character_voice_profile": "https://media.ft.tc/voices/detective_voice.json",
        "emotion": "mysterious",
        "pace": "slow",
        "background_noise": "rain_ambience",
        "output_format": "mp3",
        "sample_rate": 44100,
    },
    "evaluate_department": {
        "department_slug": "story",
        "department_number": 1,
        "gather_data": [
            {
                "content": "A young detective arrives in a small coastal town to investigate mysterious "
                "disappearances...",
                "summary": "Main story premise",
                "context": "Mystery thriller genre",
            },
            {
                "content": "Three-act structure with clear character arcs...",
                "summary": "Story structure",
                "context": "Narrative framework",
            },
        ],
        "previous_evaluations": [
            {"department": "concept", "rating": 85, "summary": "Strong conceptual foundation"}
        ],
        "threshold": 80,
    },
    "test_prompt": {
        "prompt_id": "character_creator_v2_1",
        "prompt_template": "Create a character based on: {{concept}}",
        "agent_type": "character_creator",
        "test_parameters": {"concept": "mysterious librarian with dark secrets", "genre": "thriller"},
        "test_result_id": "test_result_123",
    },
}

SERVICE_EXAMPLES: dict[str, dict[str, Any]] = {
    "render_animation": {
        "character_reference_image": "https://media.ft.tc/characters/detective_jones.png",
        "action": "tips his hat and turns to leave",
        "character_id": "detective_jones",
        "duration": 4,
        "fps": 12,
        "resolution": "512x512",
        "quality": "standard",
    },
    "process_audio": {
        "tracks": [
            {"url": "https://media.ft.tc/voices/line_001.mp3"},
            {"url": "https://media.ft.tc/ambience/rain.wav", "gain_db": -12, "fade_in_s": 1.5},
        ],
        "operations": [{"type": "denoise", "strength": "light"}, {"type": "normalize", "target_lufs": -16}],
        "output_format": "mp3",
    },
    "assemble_clip": {
        "video": "https://media.ft.tc/shots/shot_012.mp4",
        "tracks": [
            {"url": "https://media.ft.tc/voices/line_001.mp3", "offset_s": 0.5},
            {"url": "https://media.ft.tc/ambience/rain.wav", "gain_db": -14, "fade_in_s": 1.0},
        ],
        "loudness_lufs": -16,
    },
    "automated_gather_creation": {
        "department_slug": "character",
        "department_number": 2,
        "project_title": "Detective Series",
        "project_brief": "A noir detective series set in a rain-soaked 1920s port city.",
        "focus_areas": ["protagonist backstory", "antagonist motivation"],
        "target_items": 5,
    },
    "run_llm_inference": {
        "messages": [
            {"role": "system", "content": "You write one-line loglines."},
            {"role": "user", "content": "A detective who cannot remember his own cases."},
        ],
        "temperature": 0.7,
        "max_tokens": 200,
    },
    "translate_dialogue": {
        "lines": [
            {"character_id": "detective_jones", "text": "You were here the night it happened."},
            {"character_id": "librarian_mae", "text": "I am here every night, detective."},
        ],
        "target_language": "fr",
        "style_notes": "1940s noir, terse",
    },
    "run_image_to_text_inference": {
        "image_url": "https://media.ft.tc/storyboard1.jpg",
        "prompt": "a photo of",
        "max_new_tokens": 40,
    },
}

TASK_DATA_EXAMPLES: dict[str, dict[str, Any]] = {
    **SEED_EXAMPLES,
    **SERVICE_EXAMPLES,
    # Seed 004's aliases take their originals' inputs.
    "run_sd_inference": SEED_EXAMPLES["generate_image"],
    "run_tts_inference": SEED_EXAMPLES["generate_character_voice"],
}


def _ref(step: str, path: str = "result.media_url") -> dict[str, str]:
    return {"from": step, "path": path}


def scene_pipeline_example(project_id: str = "detective_series_001") -> dict[str, Any]:
    """The README's scene as a pipeline: a frame, a video from it, two voice lines, their mix, one clip."""
    return {
        "project_id": project_id,
        "name": "alley_scene",
        "steps": [
            {
                "id": "frame",
                "task_type": "generate_image",
                "task_data": {"prompt": "Rain-soaked alley at night, film noir", "seed": 7},
            },
            {
                "id": "video",
                "task_type": "generate_video",
                "task_data": {
                    "storyboard_images": [_ref("frame")],
                    "scene_description": "The detective walks through the alley",
                    "duration": 2,
                    "seed": 7,
                },
            },
            {
                "id": "line1",
                "task_type": "generate_character_voice",
                "task_data": {"text": "I've been expecting you, detective.", "emotion": "mysterious"},
            },
            {
                "id": "line2",
                "task_type": "generate_character_voice",
                "task_data": {"text": "Then you know why I'm here.", "emotion": "angry"},
            },
            {
                "id": "mix",
                "task_type": "process_audio",
                "task_data": {
                    "tracks": [{"url": _ref("line1")}, {"url": _ref("line2"), "offset_s": 2.5}],
                    "operations": ["normalize"],
                },
            },
            {
                "id": "clip",
                "task_type": "assemble_clip",
                "task_data": {"video": _ref("video"), "tracks": [{"url": _ref("mix")}], "loudness_lufs": -16},
            },
        ],
    }
