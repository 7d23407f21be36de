"""Content-addressed blob store: a local folder (embedded default) or Azure Blob Storage.

Messages carry `BlobRef`s; the bytes live here. Keys look like `midi/<sha256>.mid`, so the
same content is stored once. A `BlobRef.uri` is a real address in the configured store
(`file:///…` or `https://…/container/key`) and is only ever resolved inside that store.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlparse

from tuneforge.contracts.jobs import BlobRef

CHUNK_BYTES = 1024 * 1024


class BlobNotFound(LookupError):
    """The reference does not point at a blob in this store."""


class BlobMismatch(BlobNotFound):
    """The blob at the reference's address holds other content than the reference's sha256 names.

    Readers check: a `BlobRef` arriving over NATS may name any address, and a result (a render, a
    cached mood) is only ever the result of the content the reference claims.
    """


def verified(ref: BlobRef, sha256: str, size: int) -> None:
    """Raise `BlobMismatch` unless content of `sha256` and `size` bytes is what `ref` names."""
    if sha256 != ref.sha256 or size != ref.size_bytes:
        raise BlobMismatch(
            f"the blob does not match its reference: it holds {size} bytes of sha256 {sha256}, "
            f"the reference names {ref.size_bytes} bytes of sha256 {ref.sha256}"
        )


class BlobStore(Protocol):
    async def put_bytes(self, data: bytes, prefix: str, extension: str, content_type: str) -> BlobRef:
        """Store `data` at `<prefix>/<sha256>.<extension>` (same content, same key)."""
        ...

    async def put_file(self, path: Path, prefix: str, extension: str, content_type: str) -> BlobRef:
        """Store a file's content at `<prefix>/<sha256>.<extension>`, streaming it."""
        ...

    async def read_bytes(self, ref: BlobRef, max_bytes: int | None = None) -> bytes: ...
    async def download_to(self, ref: BlobRef, path: Path) -> None: ...
    def stream(self, ref: BlobRef, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """The blob's bytes from `offset`, `length` of them (all the rest if None), chunk by chunk."""
        ...

    async def exists(self, ref: BlobRef) -> bool:
        """Whether the reference names a blob of this store that is there, of its size."""
        ...

    async def check(self) -> None: ...
    async def close(self) -> None: ...


def copy_hashing(source: Path, target: Path) -> tuple[str, int]:
    """Copy a file and return the sha256 and size of what was copied."""
    digest, size = hashlib.sha256(), 0
    with source.open("rb") as src, target.open("wb") as dst:
        while chunk := src.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
            dst.write(chunk)
    return digest.hexdigest(), size


def sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_key(prefix: str, sha256: str, extension: str) -> str:
    return f"{prefix}/{sha256}.{extension}"


@contextlib.contextmanager
def _atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A file written beside `path` and renamed onto it when done (removed if writing fails).

    Created 0644 less the umask, as `open()` would, not 0600 like `tempfile`'s: the API and the
    actors may run as different users on one shared blob folder, and each reads what the others
    wrote.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    handle = os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), "wb")
    try:
        with handle:
            yield handle
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


class LocalBlobStore:
    """Blobs as files under one folder; writes are atomic (temp file, then rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path_for_key(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise BlobNotFound(f"blob key {key!r} escapes the store")
        return path

    def _path_for_ref(self, ref: BlobRef) -> Path:
        parsed = urlparse(ref.uri)
        if parsed.scheme != "file":
            raise BlobNotFound(f"{ref.uri!r} is not a blob of this store (expected file://)")
        path = Path(unquote(parsed.path)).resolve()
        if not path.is_relative_to(self.root):
            raise BlobNotFound(f"{ref.uri!r} is not a blob of this store (outside its folder)")
        if not path.is_file():
            raise BlobNotFound(f"no blob at {ref.uri!r}")
        return path

    def _ref(self, path: Path, sha256: str, size: int, content_type: str) -> BlobRef:
        return BlobRef(uri=path.as_uri(), sha256=sha256, size_bytes=size, content_type=content_type)

    async def put_bytes(self, data: bytes, prefix: str, extension: str, content_type: str) -> BlobRef:
        sha256 = hashlib.sha256(data).hexdigest()
        path = self._path_for_key(content_key(prefix, sha256, extension))
        if not path.is_file():
            await asyncio.to_thread(self._write_atomic, path, data)
        return self._ref(path, sha256, len(data), content_type)

    async def put_file(self, path: Path, prefix: str, extension: str, content_type: str) -> BlobRef:
        sha256, size = await asyncio.to_thread(sha256_file, path)
        target = self._path_for_key(content_key(prefix, sha256, extension))
        if not target.is_file():
            await asyncio.to_thread(self._copy_atomic, path, target)
        return self._ref(target, sha256, size, content_type)

    def _write_atomic(self, path: Path, data: bytes) -> None:
        with _atomic_file(path) as handle:
            handle.write(data)

    def _copy_atomic(self, source: Path, target: Path) -> None:
        with _atomic_file(target) as handle, source.open("rb") as src:
            shutil.copyfileobj(src, handle, CHUNK_BYTES)

    async def read_bytes(self, ref: BlobRef, max_bytes: int | None = None) -> bytes:
        path = self._path_for_ref(ref)
        if max_bytes is not None and path.stat().st_size > max_bytes:
            raise ValueError(f"blob is {path.stat().st_size} bytes, more than the {max_bytes} allowed")
        data = await asyncio.to_thread(path.read_bytes)
        verified(ref, await asyncio.to_thread(_sha256, data), len(data))
        return data

    async def download_to(self, ref: BlobRef, path: Path) -> None:
        verified(ref, *await asyncio.to_thread(copy_hashing, self._path_for_ref(ref), path))

    def local_path(self, ref: BlobRef) -> Path:
        """The file behind a reference: lets the API hand it to the OS (sendfile) directly."""
        return self._path_for_ref(ref)

    async def stream(self, ref: BlobRef, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        path = self._path_for_ref(ref)
        handle = await asyncio.to_thread(path.open, "rb")
        left = length if length is not None else ref.size_bytes - offset
        try:
            await asyncio.to_thread(handle.seek, offset)
            while left > 0 and (chunk := await asyncio.to_thread(handle.read, min(CHUNK_BYTES, left))):
                left -= len(chunk)
                yield chunk
        finally:
            handle.close()

    async def exists(self, ref: BlobRef) -> bool:
        try:
            path = self._path_for_ref(ref)
        except BlobNotFound:
            return False
        return await asyncio.to_thread(lambda: path.is_file() and path.stat().st_size == ref.size_bytes)

    async def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise OSError(f"blob folder {self.root} is not writable")

    async def close(self) -> None:
        return None


class AzureBlobStore:
    """Blobs in one Azure Blob Storage container (or Azurite), through the async SDK."""

    def __init__(
        self,
        connection_string: str | None,
        account_url: str | None,
        container: str,
        credential: str | dict[str, str] | None = None,
    ) -> None:
        from azure.storage.blob.aio import BlobServiceClient

        if connection_string:
            self._service = BlobServiceClient.from_connection_string(connection_string)
        else:
            self._service = BlobServiceClient(account_url=account_url or "", credential=credential)
        self._container = self._service.get_container_client(container)
        self._container_url = self._container.url.rstrip("/") + "/"
        self._ready = False

    async def _ensure_container(self) -> None:
        if self._ready:
            return
        from azure.core.exceptions import ResourceExistsError

        with contextlib.suppress(ResourceExistsError):
            await self._container.create_container()
        self._ready = True

    def _key_for_ref(self, ref: BlobRef) -> str:
        if not ref.uri.startswith(self._container_url):
            raise BlobNotFound(f"{ref.uri!r} is not a blob of this store")
        key = unquote(ref.uri[len(self._container_url) :])
        if not key or ".." in key.split("/"):
            raise BlobNotFound(f"{ref.uri!r} is not a blob of this store")
        return key

    async def put_bytes(self, data: bytes, prefix: str, extension: str, content_type: str) -> BlobRef:
        from azure.storage.blob import ContentSettings

        await self._ensure_container()
        sha256 = hashlib.sha256(data).hexdigest()
        blob = self._container.get_blob_client(content_key(prefix, sha256, extension))
        await blob.upload_blob(data, overwrite=True, content_settings=ContentSettings(content_type))
        return BlobRef(uri=blob.url, sha256=sha256, size_bytes=len(data), content_type=content_type)

    async def put_file(self, path: Path, prefix: str, extension: str, content_type: str) -> BlobRef:
        from azure.storage.blob import ContentSettings

        await self._ensure_container()
        sha256, size = await asyncio.to_thread(sha256_file, path)
        blob = self._container.get_blob_client(content_key(prefix, sha256, extension))
        handle = await asyncio.to_thread(path.open, "rb")
        try:
            await blob.upload_blob(
                handle,
                length=size,
                overwrite=True,
                max_concurrency=2,
                content_settings=ContentSettings(content_type),
            )
        finally:
            handle.close()
        return BlobRef(uri=blob.url, sha256=sha256, size_bytes=size, content_type=content_type)

    async def read_bytes(self, ref: BlobRef, max_bytes: int | None = None) -> bytes:
        from azure.core.exceptions import ResourceNotFoundError

        key = self._key_for_ref(ref)
        try:
            downloader = await self._container.get_blob_client(key).download_blob()
        except ResourceNotFoundError:
            raise BlobNotFound(f"no blob at {ref.uri!r}") from None
        if max_bytes is not None and downloader.size > max_bytes:
            raise ValueError(f"blob is {downloader.size} bytes, more than the {max_bytes} allowed")
        data = await downloader.readall()
        verified(ref, await asyncio.to_thread(_sha256, data), len(data))
        return data

    async def download_to(self, ref: BlobRef, path: Path) -> None:
        digest, size = hashlib.sha256(), 0
        with path.open("wb") as handle:
            async for chunk in self.stream(ref):
                digest.update(chunk)
                size += len(chunk)
                await asyncio.to_thread(handle.write, chunk)
        verified(ref, digest.hexdigest(), size)

    async def stream(self, ref: BlobRef, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        from azure.core.exceptions import ResourceNotFoundError

        key = self._key_for_ref(ref)
        try:
            downloader = await self._container.get_blob_client(key).download_blob(
                offset=offset, length=length
            )
        except ResourceNotFoundError:
            raise BlobNotFound(f"no blob at {ref.uri!r}") from None
        async for chunk in downloader.chunks():
            yield chunk

    async def exists(self, ref: BlobRef) -> bool:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            properties = await self._container.get_blob_client(self._key_for_ref(ref)).get_blob_properties()
        except (BlobNotFound, ResourceNotFoundError):
            return False
        return bool(properties.size == ref.size_bytes)

    async def check(self) -> None:
        await self._ensure_container()
        await self._container.get_container_properties()

    async def close(self) -> None:
        await self._service.close()


def open_blob_store(url: str, data_dir: Path) -> BlobStore:
    """Blob store for `TUNEFORGE_BLOB_URL`.

    - empty: the folder `<data dir>/blobs`; a path or `file://` URL: that folder;
    - an Azure connection string (`…AccountName=…` or `UseDevelopmentStorage=true`), with an
      optional `Container=name;` part (default `tuneforge`);
    - `https://account.blob.core.windows.net/<container>[?sas]` (key from `TUNEFORGE_BLOB_KEY`).
    """
    url = url.strip()
    if not url:
        return LocalBlobStore(data_dir / "blobs")
    if "AccountName=" in url or "UseDevelopmentStorage=" in url or "BlobEndpoint=" in url:
        parts = [p for p in url.split(";") if p.strip()]
        container = "tuneforge"
        kept = []
        for part in parts:
            name, _, value = part.partition("=")
            if name.strip().lower() == "container":
                container = value.strip()
            else:
                kept.append(part)
        return AzureBlobStore(";".join(kept) + ";", None, container)
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        # https://<account>.blob.core.windows.net/<container>, or an emulator's
        # http://host:port/<account>/<container>.
        path = parsed.path.strip("/")
        account_path, _, container = path.rpartition("/")
        account_url = f"{parsed.scheme}://{parsed.netloc}/{account_path}".rstrip("/")
        account_name = account_path or (parsed.hostname or "").split(".")[0]
        key = os.environ.get("TUNEFORGE_BLOB_KEY")
        credential: str | dict[str, str] | None = parsed.query or None  # a SAS token in the URL
        if key:
            credential = {"account_name": account_name, "account_key": key}
        return AzureBlobStore(None, account_url, container or "tuneforge", credential)
    if parsed.scheme == "file":
        return LocalBlobStore(Path(unquote(parsed.path)))
    return LocalBlobStore(Path(url).expanduser())
