"""/media files of the local storage backend are served only at the signed, expiring URL a task's result
carries: an API key (the owner's or another tenant's) unlocks nothing, and any other URL answers as a missing
file. The signed URL itself is a bearer capability, as S3's presigned URLs are: whoever holds it may fetch."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from taskservice.media_urls import DEV_KEY_FILE, MediaSigner
from tests.support.stack import OTHER_KEYS, Stack
from tests.support.tasks import submit, wait_status
from tests.support.tenancy import answers_as_missing, masked

PROJECT = "tenancy_media"


def _tampered(signature: str) -> str:
    return ("A" if signature[0] != "A" else "B") + signature[1:]


async def test_media_is_served_at_its_signed_url_only(api: httpx.AsyncClient, stack: Stack) -> None:
    task_data = {"prompt": "a lighthouse", "resolution": "64x64", "num_inference_steps": 2, "seed": 3}
    task_id = await submit(api, "generate_image", task_data, project_id=PROJECT)
    url = httpx.URL((await wait_status(api, task_id, "completed", timeout=180))["result"]["media_url"])
    key = url.path.removeprefix("/media/")
    assert key == f"{PROJECT}/generate_image/{task_id}.png" and set(url.params) == {"expires", "sig"}
    served = await api.get(str(url))
    assert served.status_code == 200 and served.content.startswith(b"\x89PNG")

    expires, signature = url.params["expires"], url.params["sig"]
    dev_key = (Path(stack.env["DATA_DIR"]) / DEV_KEY_FILE).read_text().strip().encode()
    expired = httpx.URL(MediaSigner(dev_key, lifetime_s=-5).signed_url(f"{url.scheme}://{url.host}", key))
    attempts = {
        "no signature": {},
        "tampered signature": {"expires": expires, "sig": _tampered(signature)},
        "later expiry, same signature": {"expires": str(int(expires) + 3600), "sig": signature},
        "signature without expiry": {"sig": signature},
        "validly signed, expired": dict(expired.params),
    }
    async with httpx.AsyncClient(base_url=stack.api_url, headers={"X-API-Key": OTHER_KEYS[0]}) as other:
        # Another tenant cannot learn the URL: the task does not exist for it.
        await answers_as_missing(lambda some_id: other.get(f"/api/v1/tasks/{some_id}/status"), task_id)
        missing_key = f"{PROJECT}/generate_image/{uuid.uuid4()}.png"
        reference = await other.get(f"/media/{missing_key}")
        assert reference.status_code == 404 and reference.json()["error"] == "not_found"
        for client in (api, other):
            for label, params in attempts.items():
                response = await client.get(f"/media/{key}", params=params)
                assert response.status_code == 404, (label, response.status_code)
                assert masked(response.text, key) == masked(reference.text, missing_key), label
        # This file's signature names this file only.
        sibling = f"{PROJECT}/generate_image/{task_id}.jpg"
        response = await other.get(f"/media/{sibling}", params={"expires": expires, "sig": signature})
        assert response.status_code == 404 and response.json()["error"] == "not_found"
