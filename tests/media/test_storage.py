"""Result storage: the local backend, and the s3 backend against moto's real S3 server through boto3."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer
from PIL import Image

from activities.io.storage import LocalStorage, S3Storage, build_storage, media_key
from activities.media.activities import MediaActivities
from tests.support.media import activity_env, assert_signed_media_url, make_settings, task_input
from tests.support.worker_resources import opened

BUCKET = "task-media-test"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def s3_client(endpoint: str) -> object:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def s3_settings(endpoint: str) -> dict[str, object]:
    return {
        "storage_backend": "s3",
        "s3_endpoint_url": endpoint,
        "s3_bucket": BUCKET,
        "s3_region": "us-east-1",
        "aws_access_key_id": "test",
        "aws_secret_access_key": "test",
    }


def test_media_key() -> None:
    assert media_key("proj_1", "generate_image", "task_9", "png") == "proj_1/generate_image/task_9.png"
    for bad in ("..", "a/b", ""):
        with pytest.raises(ValueError):
            media_key(bad, "generate_image", "t", "png")


async def test_local_storage_atomic_and_idempotent(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    storage = build_storage(make_settings(tiny_models, tmp_path, media_public_url="http://h/media/"))
    assert isinstance(storage, LocalStorage)
    source = tmp_path / "in.bin"
    source.write_bytes(b"first")
    stored = await storage.put_file("p/t/id.bin", source, "application/octet-stream")
    assert_signed_media_url(stored.url, tmp_path, "p/t/id.bin", base="http://h/media")
    assert stored.size == 5
    source.write_bytes(b"second, longer")
    again = await storage.put_file("p/t/id.bin", source, "application/octet-stream")
    target = tmp_path / "media" / "p" / "t" / "id.bin"
    assert target.read_bytes() == b"second, longer" and again.size == 14
    assert [p.name for p in target.parent.iterdir()] == ["id.bin"]
    with pytest.raises(ValueError):
        await storage.put_file("../escape.bin", source, "application/octet-stream")


async def test_generate_image_into_s3(s3_endpoint: str, tiny_models: dict[str, Path], tmp_path: Path) -> None:
    settings = make_settings(tiny_models, tmp_path, **s3_settings(s3_endpoint))
    client = s3_client(s3_endpoint)
    client.create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
    async with opened(MediaActivities, settings) as acts:
        data = {"prompt": "a lighthouse", "resolution": "64x48", "quality": "draft", "seed": 5}
        task = task_input("generate_image", data, task_id="img_s3")
        result = await activity_env().env.run(acts.generate_image, task)
        # Retried attempt: same key, one object.
        await activity_env().env.run(acts.generate_image, task)
    key = "proj_media/generate_image/img_s3.png"
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix="proj_media/generate_image/")  # type: ignore[attr-defined]
    assert [o["Key"] for o in listed["Contents"]] == [key]
    obj = client.get_object(Bucket=BUCKET, Key=key)  # type: ignore[attr-defined]
    body = obj["Body"].read()
    assert obj["ContentType"] == "image/png"
    with Image.open(io.BytesIO(body)) as image:
        assert image.size == (64, 48)
    assert result["metadata"]["file_size"] == len(body)
    # No public base configured: a presigned GET URL that really serves the object.
    assert "X-Amz-Signature=" in result["media_url"]
    async with httpx.AsyncClient() as http:
        response = await http.get(result["media_url"])
    assert response.status_code == 200 and response.content == body


async def test_s3_public_url_and_bucket_creation(
    s3_endpoint: str, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    overrides = {
        **s3_settings(s3_endpoint),
        "s3_bucket": "made-on-demand",
        "r2_public_url": "https://cdn.test/",
    }
    storage = build_storage(make_settings(tiny_models, tmp_path, **overrides), create_bucket=True)
    assert isinstance(storage, S3Storage)
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"\x00" * 1000)
    stored = await storage.put_file("p/generate_video/t.mp4", source, "video/mp4")
    assert stored.url == "https://cdn.test/p/generate_video/t.mp4" and stored.size == 1000
    head = s3_client(s3_endpoint).head_object(Bucket="made-on-demand", Key="p/generate_video/t.mp4")  # type: ignore[attr-defined]
    assert head["ContentLength"] == 1000 and head["ContentType"] == "video/mp4"


@pytest.mark.parametrize("backend", ["local", "s3"])
async def test_kept_files_are_read_back_and_deleted(
    backend: str, s3_endpoint: str, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """What a resumed render needs of the storage (activities.media.resume): get a kept clip, delete it."""
    overrides = {**s3_settings(s3_endpoint), "s3_bucket": "kept-clips"} if backend == "s3" else {}
    storage = build_storage(make_settings(tiny_models, tmp_path, **overrides), create_bucket=True)
    source = tmp_path / "clip0.npy"
    source.write_bytes(b"frames")
    key = media_key("p", "generate_video", "t", "clip0.npy")
    await storage.put_file(key, source, "application/octet-stream")
    copy = tmp_path / "copy.npy"
    assert await storage.get_file(key, copy) and copy.read_bytes() == b"frames"
    await storage.delete(
        [key, media_key("p", "generate_video", "t", "clip9.npy")]
    )  # a missing one is no error
    assert not await storage.get_file(key, tmp_path / "gone.npy")
    await storage.delete([])
