"""The worker's model cache: one load per model under concurrency, from_pipe sharing, LRU eviction."""

from __future__ import annotations

import threading
from pathlib import Path

from activities.media.models import ModelCache
from activities.model_loads import counting_model_loads


def test_concurrent_requests_load_once(tiny_models: dict[str, Path]) -> None:
    cache = ModelCache(device="cpu", max_gb=1.0)
    model = str(tiny_models["tiny-sd"])
    barrier = threading.Barrier(4)
    got: list[object] = []

    def ask() -> None:
        barrier.wait()
        got.append(cache.text_to_image(model))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.loads == 1 and len({id(p) for p in got}) == 1
    assert cache.loaded_models() == [model]


def test_lru_eviction_under_budget(tiny_models: dict[str, Path]) -> None:
    sd, video = str(tiny_models["tiny-sd"]), str(tiny_models["tiny-video"])
    probe = ModelCache(device="cpu", max_gb=1.0)
    probe.text_to_image(sd)
    sd_bytes = probe.resident_bytes()
    assert sd_bytes > 0

    # Room for the SD pipeline but not for SD and the video pipeline together.
    cache = ModelCache(device="cpu", max_gb=(sd_bytes * 1.2) / 2**30)
    text = cache.text_to_image(sd)
    img = cache.image_to_image(sd, sd)  # from_pipe companion: shares modules, costs nothing
    assert img.unet is text.unet and cache.resident_bytes() == sd_bytes
    cache.text_to_video(video)
    # SD (and its img2img companion) went; the newest model always stays, even alone over budget.
    assert cache.loaded_models() == [video]
    loads = cache.loads
    cache.text_to_image(sd)
    assert cache.loads == loads + 1 and cache.loaded_models() == [sd]


def test_an_attempt_counts_the_seconds_it_waited_for_a_cold_model(tiny_models: dict[str, Path]) -> None:
    """Loading, and waiting on another thread's load, count for the attempt that asked; a warm model does not
    (the learned durations take these seconds out of the task's run: activities.model_loads)."""
    cache = ModelCache(device="cpu", max_gb=1.0)
    model = str(tiny_models["tiny-sd"])
    barrier = threading.Barrier(2)
    waited: list[float] = []

    def ask() -> None:
        with counting_model_loads() as loads:
            barrier.wait()
            cache.text_to_image(model)
        waited.append(loads.seconds)

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.loads == 1 and len(waited) == 2
    # The loader took the load's time; the other waited on it for most of it.
    assert max(waited) >= cache.load_seconds * 0.99 and min(waited) > 0
    with counting_model_loads() as warm:
        cache.text_to_image(model)
    assert warm.seconds == 0.0
