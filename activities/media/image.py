"""generate_image: a diffusers text-to-image run, or img2img from a reference image or the style guide.

The denoising runs in the worker's image batches (`activities.media.batch`): alone, or in one pipeline call
with other same-shape tasks. The PNG is encoded and published after the device is released.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from activities.io.publish import ResultFile
from activities.media.batch import BatchKey, ImageRequest
from activities.media.prompts import compose_image_prompt
from activities.media.tools import (
    P_ENCODE,
    MediaTools,
    media_result,
    parse_resolution,
    workdir,
)
from activities.provenance import Recipe
from activities.runtime import TaskProgress
from taskservice.contracts import TaskActivityInput
from taskservice.task_data import GenerateImageData
from taskservice.tracing import span

if TYPE_CHECKING:
    from PIL.Image import Image

# img2img strengths: how far from the conditioning image the result may move.
REFERENCE_STRENGTH = 0.65
STYLE_GUIDE_STRENGTH = 0.85


async def generate_image(
    tools: MediaTools, task: TaskActivityInput, data: GenerateImageData, progress: TaskProgress
) -> dict[str, Any]:
    tools.check_budget(task.task_type, data)
    model_id = tools.model_id("image2image" if data.reference_images or data.style_guide else "text2image")
    width, height = parse_resolution(data.resolution)
    steps, seed = data.denoising_steps(), data.run_seed()
    urls = [*data.reference_images, *([data.style_guide] if data.style_guide else [])]
    hashes: dict[str, str] = {}
    images = await tools.fetch_images(urls, progress, hashes)
    init_image = images[0] if images else None
    strength = REFERENCE_STRENGTH if data.reference_images else STYLE_GUIDE_STRENGTH
    if init_image is not None:
        # img2img runs int(steps × strength) steps: make sure that is at least one.
        steps = max(steps, math.ceil(1 / strength))
    key = BatchKey(
        kind="image2image" if init_image is not None else "text2image",
        model_id=model_id,
        text_model_id=tools.settings.image_model if init_image is not None else None,
        width=width,
        height=height,
        steps=steps,
        strength=strength if init_image is not None else None,
    )
    total = steps if key.strength is None else int(steps * key.strength)
    previews = tools.previews_for(task, progress, "image")
    request = ImageRequest(
        task_id=task.task_id,
        prompt=compose_image_prompt(data),
        negative_prompt=data.negative_prompt,
        seed=seed,
        init_image=init_image,
        progress=progress,
        on_step=tools.step_hook(task.task_id, progress, total=total, offset=0, span=total, suffix=""),
        on_latents=previews.offer if previews is not None else None,
    )
    rendered = await tools.guarded(tools.images.render(key, request))
    with workdir(task) as folder:
        path = folder / "image.png"
        progress.report(P_ENCODE, "saving_image")
        with span("media.encode", format="png"):
            size = await asyncio.to_thread(_write_png, rendered.image, path)
        recipe = Recipe(model_id, [seed], rendered.steps, size, tools.models.device, hashes)
        provenance = await tools.provenance_of(recipe, path)
        published = await tools.publish(task, ResultFile(path, "png", "image/png"), request.prompt, progress)
    conditioning = "reference_image" if data.reference_images else "style_guide" if images else "text"
    return media_result(
        published,
        model_id=model_id,
        seed=seed,
        size=size,
        steps=rendered.steps,
        conditioning=conditioning,
        format="png",
        batch_size=rendered.batch_size,
        provenance=provenance,
    )


def _write_png(image: Image, path: Path) -> tuple[int, int]:
    """Blocking: write the PNG and read it back; (width, height) as the file holds them."""
    from PIL import Image as PILImage

    image.save(path, format="PNG")
    with PILImage.open(path) as written:
        written.verify()  # a truncated or corrupt PNG fails here, not in a client's browser
    with PILImage.open(path) as written:
        width, height = written.size
    return int(width), int(height)
