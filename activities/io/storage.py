"""Where task results go: local files served by the API under /media, or an S3-compatible bucket (R2, MinIO).

Keys are deterministic (`{project_id}/{task_type}/{task_id}.{ext}`), and both backends overwrite in place,
so an activity retried after a successful upload ends with the same single object.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from taskservice.media_urls import media_signer
from taskservice.settings import Settings

log = logging.getLogger("taskservice.storage")


@dataclass
class StoredMedia:
    key: str
    url: str
    size: int
    content_type: str


class MediaStorage(Protocol):
    async def put_file(self, key: str, path: Path, content_type: str) -> StoredMedia: ...

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...

    async def read_bytes(self, key: str) -> bytes | None:
        """The object's bytes; None when there is no such object."""
        ...

    async def exists(self, key: str) -> bool: ...

    def url_for(self, key: str) -> str:
        """A URL a caller can fetch the object at (signed and expiring unless the bucket is public)."""
        ...

    async def get_file(self, key: str, path: Path) -> bool:
        """Copy the object at `key` to `path`; False when there is none."""
        ...

    async def delete(self, keys: list[str]) -> None:
        """Remove these objects (missing ones are no error)."""
        ...


def media_key(project_id: str, task_type: str, task_id: str, ext: str) -> str:
    """The storage key of a task's result; ids are path-checked so a key cannot climb out of its folder."""
    for part in (project_id, task_type, task_id, ext):
        if not part or "/" in part or "\\" in part or part in (".", "..") or "\x00" in part:
            raise ValueError(f"unsafe storage key component {part!r}")
    return f"{project_id}/{task_type}/{task_id}.{ext.lstrip('.')}"


class LocalStorage:
    """Files under `data_dir/media`, served by the API at `media_public_url` behind signed, expiring URLs."""

    def __init__(self, settings: Settings) -> None:
        self.root = (settings.data_dir / "media").resolve()
        self._public_url = settings.media_public_url.rstrip("/")
        self._signer = media_signer(settings)

    async def put_file(self, key: str, path: Path, content_type: str) -> StoredMedia:
        target = self._path(key)
        size = await asyncio.to_thread(_copy_atomically, path, target)
        return StoredMedia(key=key, url=self.url_for(key), size=size, content_type=content_type)

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(_write_atomically, data, self._path(key))

    async def read_bytes(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None

    async def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def url_for(self, key: str) -> str:
        return self._signer.signed_url(self._public_url, key)

    async def get_file(self, key: str, path: Path) -> bool:
        source = self._path(key)
        if not source.is_file():
            return False
        await asyncio.to_thread(shutil.copyfile, source, path)
        return True

    async def delete(self, keys: list[str]) -> None:
        for key in keys:
            self._path(key).unlink(missing_ok=True)

    def _path(self, key: str) -> Path:
        target = (self.root / key).resolve()
        if not target.is_relative_to(self.root):
            raise ValueError(f"storage key {key!r} escapes the media folder")
        return target


def _write_atomically(data: bytes, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _copy_atomically(source: Path, target: Path) -> int:
    # Copy to a temp file in the same folder, then rename: readers never see a half-written file, and a
    # retried upload just replaces the previous copy.
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out, 1024 * 1024)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target.stat().st_size


class S3Storage:
    """An S3-compatible bucket through boto3; URLs are public (R2_PUBLIC_URL) or presigned GETs."""

    def __init__(self, settings: Settings, *, create_bucket: bool = False) -> None:
        import boto3  # deferred: boto3 takes ~0.3 s to import and only s3 workers need it
        from botocore.config import Config

        self._bucket = settings.s3_bucket
        self._public_url = settings.r2_public_url.rstrip("/") if settings.r2_public_url else None
        self._expiry = settings.presign_expiry_s
        self._create_bucket = create_bucket
        self._bucket_checked = False
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            # boto3 refuses "auto" for AWS itself; R2 accepts it, MinIO/moto accept any region.
            region_name=settings.s3_region,
            aws_access_key_id=_secret(settings.aws_access_key_id),
            aws_secret_access_key=_secret(settings.aws_secret_access_key),
            # Retries are the activity's; the SDK's own are kept short so a dead endpoint fails fast.
            config=Config(retries={"max_attempts": 2, "mode": "standard"}, signature_version="s3v4"),
        )

    async def put_file(self, key: str, path: Path, content_type: str) -> StoredMedia:
        return await asyncio.to_thread(self._put_file, key, path, content_type)

    def _put_file(self, key: str, path: Path, content_type: str) -> StoredMedia:
        if self._create_bucket and not self._bucket_checked:
            self._ensure_bucket()
        size = path.stat().st_size
        # PUT of the same key replaces the object: a retried activity leaves one object, not two.
        self._client.upload_file(str(path), self._bucket, key, ExtraArgs={"ContentType": content_type})
        # The key, not the URL: a presigned URL's query string is a bearer credential.
        log.info("Stored media", extra={"bucket": self._bucket, "key": key, "size": size})
        return StoredMedia(key=key, url=self.url_for(key), size=size, content_type=content_type)

    def url_for(self, key: str) -> str:
        if self._public_url:
            return f"{self._public_url}/{key}"
        url: str = self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=self._expiry
        )
        return url

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        if self._create_bucket and not self._bucket_checked:
            await asyncio.to_thread(self._ensure_bucket)
        await asyncio.to_thread(
            self._client.put_object, Bucket=self._bucket, Key=key, Body=data, ContentType=content_type
        )

    async def read_bytes(self, key: str) -> bytes | None:
        return await asyncio.to_thread(self._read_bytes, key)

    def _read_bytes(self, key: str) -> bytes | None:
        try:
            data: bytes = self._client.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except self._client.exceptions.NoSuchKey:
            return None
        return data

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._exists, key)

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client.head_object(Bucket=self._bucket, Key=key)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    async def get_file(self, key: str, path: Path) -> bool:
        return await asyncio.to_thread(self._get_file, key, path)

    def _get_file(self, key: str, path: Path) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client.download_file(self._bucket, key, str(path))
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                return False
            raise
        return True

    async def delete(self, keys: list[str]) -> None:
        if keys:
            objects = [{"Key": key} for key in keys]
            await asyncio.to_thread(
                self._client.delete_objects, Bucket=self._bucket, Delete={"Objects": objects}
            )

    def _ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self._client.head_bucket(Bucket=self._bucket)
        except ClientError:
            self._client.create_bucket(Bucket=self._bucket)
        self._bucket_checked = True


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())


def build_storage(settings: Settings, *, create_bucket: bool = False) -> MediaStorage:
    """The backend STORAGE_BACKEND names; `create_bucket` (tests, dev) makes a missing bucket."""
    if settings.storage_backend == "s3":
        return S3Storage(settings, create_bucket=create_bucket)
    return LocalStorage(settings)
