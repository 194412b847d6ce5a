"""Where artifact content lives. The ledger keeps metadata and a storage reference;
the reference never leaves the backend (clients get a download route instead)."""

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from uuid import UUID, uuid4

from ledger.database import data_dir

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class StoredObject:
    storage_ref: str
    sha256: str
    size_bytes: int


class ArtifactStore(Protocol):
    def put(self, tenant_id: str, task_id: UUID, name: str, content: bytes) -> StoredObject: ...

    def get(self, storage_ref: str) -> bytes: ...

    def delete(self, storage_ref: str) -> None: ...


class LocalArtifactStore:
    """Files under a root directory; `local:<tenant>/<task>/<id>-<name>` references."""

    scheme = "local:"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def put(self, tenant_id: str, task_id: UUID, name: str, content: bytes) -> StoredObject:
        relative = Path(
            _SAFE_NAME.sub("_", tenant_id),
            str(task_id),
            f"{uuid4().hex}-{_SAFE_NAME.sub('_', name)}",
        )
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return StoredObject(
            self.scheme + relative.as_posix(), hashlib.sha256(content).hexdigest(), len(content)
        )

    def get(self, storage_ref: str) -> bytes:
        return self._path(storage_ref).read_bytes()

    def delete(self, storage_ref: str) -> None:
        self._path(storage_ref).unlink(missing_ok=True)

    def _path(self, storage_ref: str) -> Path:
        if not storage_ref.startswith(self.scheme):
            raise ValueError(f"not a local artifact reference: {storage_ref[:20]}")
        path = (self.root / storage_ref.removeprefix(self.scheme)).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError("artifact reference escapes the store")
        return path


def artifact_store_from_env() -> ArtifactStore:
    root = os.environ.get("WORKBENCH_ARTIFACT_DIR")
    return LocalArtifactStore(Path(root) if root else data_dir() / "artifacts")
