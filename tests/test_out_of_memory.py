"""Running out of memory fails the task at once (non-retryable `OutOfMemory`), never four more tries."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from temporalio.exceptions import ApplicationError

from activities.runtime import TaskProgress, out_of_memory, run_task
from taskservice.catalog import CATALOG
from taskservice.task_data import GenerateImageData
from tests.support.media import activity_env, task_input


def _numpy_memory_error() -> MemoryError:
    try:
        np.empty(2**62, dtype=np.uint8)  # a real allocation numpy refuses
    except MemoryError as err:
        return err
    raise AssertionError("numpy allocated 4 EiB")


def _attempt(error: Callable[[], BaseException]) -> Callable[[GenerateImageData, TaskProgress], object]:
    async def work(data: GenerateImageData, progress: TaskProgress) -> object:
        raise error()

    return work


@pytest.mark.parametrize(
    "error",
    [
        lambda: torch.OutOfMemoryError(
            "CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 23.65 GiB total)"
        ),
        _numpy_memory_error,
    ],
    ids=["torch", "numpy"],
)
async def test_out_of_memory_is_a_non_retryable_failure(error: Callable[[], BaseException]) -> None:
    task = task_input("generate_image", {"prompt": "a lighthouse"})
    with pytest.raises(ApplicationError) as caught:
        await activity_env().env.run(run_task, task, GenerateImageData, _attempt(error))
    failure = caught.value
    assert failure.type == "OutOfMemory" and failure.non_retryable
    assert failure.message.startswith("generate_image ran out of memory on its worker (")
    assert "OutOfMemory" in CATALOG["generate_image"].plan(60.0).retry.non_retryable_error_types


async def test_other_runtime_errors_stay_retryable() -> None:
    task = task_input("generate_image", {"prompt": "a lighthouse"})
    with pytest.raises(RuntimeError, match="device lost"):
        await activity_env().env.run(
            run_task, task, GenerateImageData, _attempt(lambda: RuntimeError("device lost"))
        )


def test_classifier() -> None:
    assert out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert out_of_memory(_numpy_memory_error())
    assert not out_of_memory(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert not out_of_memory(ValueError("out of memory"))  # the type decides, never the words
