"""Payload CMS registration over REST against a real local HTTP receiver."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.io.payload_cms import PayloadCMS, PayloadCMSError
from activities.media.activities import MediaActivities
from taskservice.settings import Settings
from tests.support.file_server import StaticFileServer
from tests.support.media import activity_env, json_body, make_settings, task_input
from tests.support.worker_resources import opened


def cms(http_server: StaticFileServer, client: httpx.AsyncClient, prefix: str = "/api") -> PayloadCMS:
    settings = Settings(payload_api_url=http_server.base_url + prefix + "/", payload_api_key="k-123")
    return PayloadCMS(settings, client)


async def test_register_media_multipart(http_server: StaticFileServer, tmp_path: Path) -> None:
    http_server.put("POST /api/media", json_body({"doc": {"id": "64f0c0ffee"}, "message": "ok"}),
                    content_type="application/json", status=201)  # fmt: skip
    file = tmp_path / "t1.png"
    file.write_bytes(b"\x89PNG fake")
    before = len(http_server.received)
    async with httpx.AsyncClient() as client:
        doc_id = await cms(http_server, client).register_media(
            file, filename="t1.png", content_type="image/png", alt="a red fox"
        )
    assert doc_id == "64f0c0ffee"
    request = http_server.received[before]
    assert request.path == "/api/media"
    assert request.headers["authorization"] == "users API-Key k-123"
    assert request.headers["content-type"].startswith("multipart/form-data")
    assert b'name="file"; filename="t1.png"' in request.body and b"\x89PNG fake" in request.body
    assert b'name="_payload"' in request.body and b'{"alt": "a red fox"}' in request.body


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(401, "AuthenticationFailed"), (403, "AuthenticationFailed"), (400, "UpstreamClientError")],
)
async def test_register_media_client_errors(
    http_server: StaticFileServer, tmp_path: Path, status: int, error_type: str
) -> None:
    http_server.put(f"POST /e{status}/media", json_body({"errors": [{"message": "nope"}]}),
                    content_type="application/json", status=status)  # fmt: skip
    file = tmp_path / "f.png"
    file.write_bytes(b"x")
    async with httpx.AsyncClient() as client:
        with pytest.raises(ApplicationError) as caught:
            await cms(http_server, client, f"/e{status}").register_media(
                file, filename="f.png", content_type="image/png", alt="x"
            )
    assert caught.value.type == error_type and caught.value.non_retryable


async def test_register_media_server_error_is_retryable(
    http_server: StaticFileServer, tmp_path: Path
) -> None:
    http_server.put("POST /down/media", b"oops", content_type="text/plain", status=502)
    file = tmp_path / "f.png"
    file.write_bytes(b"x")
    async with httpx.AsyncClient() as client:
        with pytest.raises(PayloadCMSError):
            await cms(http_server, client, "/down").register_media(
                file, filename="f.png", content_type="image/png", alt="x"
            )


async def test_not_configured_returns_none(tmp_path: Path) -> None:
    file = tmp_path / "f.png"
    file.write_bytes(b"x")
    async with httpx.AsyncClient() as client:
        payload = PayloadCMS(Settings(), client)
        assert not payload.enabled
        assert await payload.register_media(file, filename="f.png", content_type="image/png", alt="x") is None


async def test_activity_reports_payload_media_id(
    http_server: StaticFileServer, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    http_server.put(
        "POST /cms/media", json_body({"doc": {"id": 42}}), content_type="application/json", status=201
    )
    settings = make_settings(
        tiny_models, tmp_path, payload_api_url=http_server.base_url + "/cms", payload_api_key="k"
    )
    async with opened(MediaActivities, settings) as acts:
        data = {"prompt": "a kite", "resolution": "64x64", "quality": "draft"}
        result = await activity_env().env.run(acts.generate_image, task_input("generate_image", data))
    assert result["payload_media_id"] == "42"
