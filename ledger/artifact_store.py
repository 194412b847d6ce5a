"""Where artifact content lives. The ledger keeps metadata and a storage reference;
the reference never leaves the backend (clients get a download route instead).

Stores are synchronous: callers run them through `asyncio.to_thread`."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from uuid import UUID, uuid4

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from ledger.database import data_dir

if TYPE_CHECKING:
    # The blob SDK takes ~0.2 s to import; the CLI and local-store deployments skip it.
    from azure.identity import DefaultAzureCredential
    from azure.storage.blob import BlobServiceClient, ContainerClient

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
# Names come from agents: keep a path segment well inside file-name (255 bytes) and
# blob-name (1,024 characters) limits once the uuid prefix is added.
_MAX_SEGMENT = 200

DEFAULT_BLOB_CONTAINER = "workbench-artifacts"


def _safe(part: str) -> str:
    """One path segment: no separators, and never empty, `.` or `..`, which would
    climb out of the tenant's prefix (a filesystem resolves them, URL clients collapse them)."""
    cleaned = _SAFE_NAME.sub("_", part)[:_MAX_SEGMENT]
    if not cleaned.strip("."):
        return cleaned.replace(".", "_") or "_"
    return cleaned


def _relative_name(tenant_id: str, task_id: UUID, name: str) -> str:
    # The uuid makes every put a new object, so two artifacts with one name never collide.
    return f"{_safe(tenant_id)}/{task_id}/{uuid4().hex}-{_safe(name)}"


@dataclass(frozen=True)
class StoredObject:
    storage_ref: str
    sha256: str
    size_bytes: int


class ArtifactStore(Protocol):
    """`get` raises FileNotFoundError for a missing object and ValueError for a reference
    that is not this store's; `delete` of a missing object is not an error."""

    def put(self, tenant_id: str, task_id: UUID, name: str, content: bytes) -> StoredObject: ...

    def get(self, storage_ref: str) -> bytes: ...

    def delete(self, storage_ref: str) -> None: ...

    def close(self) -> None: ...


class LocalArtifactStore:
    """Files under a root directory; `local:<tenant>/<task>/<id>-<name>` references."""

    scheme = "local:"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def put(self, tenant_id: str, task_id: UUID, name: str, content: bytes) -> StoredObject:
        relative = _relative_name(tenant_id, task_id, name)
        path = self._path(self.scheme + relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return StoredObject(
            self.scheme + relative, hashlib.sha256(content).hexdigest(), len(content)
        )

    def get(self, storage_ref: str) -> bytes:
        return self._path(storage_ref).read_bytes()

    def delete(self, storage_ref: str) -> None:
        self._path(storage_ref).unlink(missing_ok=True)

    def close(self) -> None:
        pass

    def _path(self, storage_ref: str) -> Path:
        if not storage_ref.startswith(self.scheme):
            raise ValueError(f"not a local artifact reference: {storage_ref[:20]}")
        # normpath, not resolve(): resolving cost an lstat per path component on every
        # put, a third of storing an agent's output. Only this store writes under its
        # (resolved) root, so no symlink there can lead out; `..` is what can.
        path = Path(os.path.normpath(self.root / storage_ref.removeprefix(self.scheme)))
        if not path.is_relative_to(self.root):
            raise ValueError("artifact reference escapes the store")
        return path


class AzureBlobArtifactStore:
    """Block blobs in one container; `blob:<container>/<tenant>/<task>/<id>-<name>` references.

    The container name is part of the reference so that a reference written against one
    container is refused, not misread, after the deployment points at another."""

    scheme = "blob:"

    def __init__(
        self,
        service: BlobServiceClient,
        container: str,
        credential: DefaultAzureCredential | None = None,
    ) -> None:
        self._service = service
        self._container: ContainerClient = service.get_container_client(container)
        self._prefix = f"{self.scheme}{container}/"
        # Owned so close() can release it: the SDK client does not close its credential.
        self._credential = credential
        # The container is made on first put, not here: stores are built inside the API's
        # event loop (lifespan), where a blocking network call does not belong.
        self._ready = False
        self._ready_lock = threading.Lock()

    @classmethod
    def from_connection_string(
        cls, connection_string: str, container: str = DEFAULT_BLOB_CONTAINER
    ) -> AzureBlobArtifactStore:
        from azure.storage.blob import BlobServiceClient

        return cls(BlobServiceClient.from_connection_string(connection_string), container)

    @classmethod
    def from_account_url(
        cls, account_url: str, container: str = DEFAULT_BLOB_CONTAINER
    ) -> AzureBlobArtifactStore:
        # Imported here, as elsewhere in the project: azure-identity (msal) is slow to import.
        from azure.identity import DefaultAzureCredential
        from azure.storage.blob import BlobServiceClient

        # In AKS this resolves to workload identity (AZURE_CLIENT_ID, AZURE_TENANT_ID and
        # AZURE_FEDERATED_TOKEN_FILE injected by the webhook).
        credential = DefaultAzureCredential()
        return cls(BlobServiceClient(account_url, credential=credential), container, credential)

    @property
    def container(self) -> str:
        return self._container.container_name

    def put(self, tenant_id: str, task_id: UUID, name: str, content: bytes) -> StoredObject:
        from azure.storage.blob import ContentSettings

        self._ensure_container()
        blob_name = _relative_name(tenant_id, task_id, name)
        digest = hashlib.sha256(content).hexdigest()
        self._container.upload_blob(
            blob_name,
            content,
            length=len(content),
            # The uuid makes a clash impossible in practice; if one happens, fail, never
            # replace another artifact's content.
            overwrite=False,
            metadata={"sha256": digest},
            # The store is not told the media type (the ledger keeps it and the API sets it
            # on download), so the blob itself is opaque bytes.
            content_settings=ContentSettings(content_type="application/octet-stream"),
        )
        return StoredObject(self._prefix + blob_name, digest, len(content))

    def get(self, storage_ref: str) -> bytes:
        try:
            return self._container.download_blob(self._blob_name(storage_ref)).readall()
        except ResourceNotFoundError as error:
            # Same exception as the local store, so callers handle one "gone" case.
            raise FileNotFoundError(f"artifact not found: {storage_ref}") from error

    def delete(self, storage_ref: str) -> None:
        blob_name = self._blob_name(storage_ref)
        # Deleting what is already gone is done, as with the local store.
        with contextlib.suppress(ResourceNotFoundError):
            self._container.delete_blob(blob_name, delete_snapshots="include")

    def close(self) -> None:
        self._service.close()
        if self._credential is not None:
            self._credential.close()

    def _ensure_container(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if not self._ready:
                with contextlib.suppress(ResourceExistsError):
                    self._container.create_container()
                self._ready = True

    def _blob_name(self, storage_ref: str) -> str:
        if not storage_ref.startswith(self._prefix):
            raise ValueError(f"not a reference into this blob container: {storage_ref[:40]}")
        blob_name = storage_ref.removeprefix(self._prefix)
        # References are only ever made by put(); anything with dot segments or an empty
        # segment was not, and could address outside the tenant's prefix once URL-normalised.
        if any(part in ("", ".", "..") for part in blob_name.split("/")):
            raise ValueError("artifact reference escapes the store")
        return blob_name


def artifact_store_from_env() -> ArtifactStore:
    """Azure Blob Storage when either blob variable is set (the connection string wins:
    it is what Azurite and development use), else files under WORKBENCH_ARTIFACT_DIR."""
    container = os.environ.get("WORKBENCH_ARTIFACT_BLOB_CONTAINER") or DEFAULT_BLOB_CONTAINER
    if connection_string := os.environ.get("WORKBENCH_ARTIFACT_BLOB_CONNECTION_STRING"):
        return AzureBlobArtifactStore.from_connection_string(connection_string, container)
    if account_url := os.environ.get("WORKBENCH_ARTIFACT_BLOB_ACCOUNT_URL"):
        return AzureBlobArtifactStore.from_account_url(account_url, container)
    root = os.environ.get("WORKBENCH_ARTIFACT_DIR")
    return LocalArtifactStore(Path(root) if root else data_dir() / "artifacts")
