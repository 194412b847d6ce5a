"""The artifact stores. The blob store runs the real azure-storage-blob SDK against Azurite
(see azurite.py); the local store against a temporary directory."""

import hashlib
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from azure.storage.blob import BlobServiceClient
from azurite import running_azurite

from ledger.artifact_store import (
    AzureBlobArtifactStore,
    LocalArtifactStore,
    artifact_store_from_env,
)

BLOB_VARIABLES = (
    "WORKBENCH_ARTIFACT_BLOB_CONNECTION_STRING",
    "WORKBENCH_ARTIFACT_BLOB_ACCOUNT_URL",
    "WORKBENCH_ARTIFACT_BLOB_CONTAINER",
)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Azurite for the session; yields its connection string."""
    with running_azurite(tmp_path_factory.mktemp("azurite")) as connection_string:
        yield connection_string


@pytest.fixture
def container() -> str:
    # A container per test keeps tests apart; the store creates it on first put.
    return f"test-{uuid4().hex[:12]}"


@pytest.fixture
def blob_store(azurite: str, container: str) -> Iterator[AzureBlobArtifactStore]:
    store = AzureBlobArtifactStore.from_connection_string(azurite, container)
    yield store
    store.close()


@pytest.fixture
def service(azurite: str) -> Iterator[BlobServiceClient]:
    """A plain SDK client, to look at what the store wrote."""
    with BlobServiceClient.from_connection_string(azurite) as client:
        yield client


def test_blob_round_trip(
    blob_store: AzureBlobArtifactStore, container: str, service: BlobServiceClient
) -> None:
    task_id = uuid4()
    content = b"report body \x00\xff" * 1000

    stored = blob_store.put("tenant-a", task_id, "report final.md", content)

    assert stored.sha256 == hashlib.sha256(content).hexdigest()
    assert stored.size_bytes == len(content)
    prefix = f"blob:{container}/tenant-a/{task_id}/"
    assert stored.storage_ref.startswith(prefix)
    assert stored.storage_ref.endswith("-report_final.md")
    assert blob_store.get(stored.storage_ref) == content

    blob = service.get_blob_client(container, stored.storage_ref.removeprefix(f"blob:{container}/"))
    properties = blob.get_blob_properties()
    assert properties.metadata == {"sha256": stored.sha256}
    assert properties.content_settings.content_type == "application/octet-stream"
    assert properties.size == len(content)


def test_blob_empty_content(blob_store: AzureBlobArtifactStore) -> None:
    stored = blob_store.put("tenant-a", uuid4(), "empty.txt", b"")
    assert stored.size_bytes == 0
    assert stored.sha256 == hashlib.sha256(b"").hexdigest()
    assert blob_store.get(stored.storage_ref) == b""


def test_blob_same_name_twice_gets_two_objects(blob_store: AzureBlobArtifactStore) -> None:
    task_id = uuid4()
    first = blob_store.put("tenant-a", task_id, "out.txt", b"first")
    second = blob_store.put("tenant-a", task_id, "out.txt", b"second")

    assert first.storage_ref != second.storage_ref
    assert blob_store.get(first.storage_ref) == b"first"
    assert blob_store.get(second.storage_ref) == b"second"


def test_blob_delete(blob_store: AzureBlobArtifactStore) -> None:
    stored = blob_store.put("tenant-a", uuid4(), "gone.txt", b"soon gone")

    blob_store.delete(stored.storage_ref)

    with pytest.raises(FileNotFoundError):
        blob_store.get(stored.storage_ref)
    blob_store.delete(stored.storage_ref)  # already gone: not an error


def test_blob_unsafe_names_stay_in_the_tenant_prefix(
    blob_store: AzureBlobArtifactStore, container: str
) -> None:
    task_id = uuid4()
    stored = blob_store.put("..", task_id, "../../etc/passwd", b"x")

    blob_name = stored.storage_ref.removeprefix(f"blob:{container}/")
    tenant, task, leaf = blob_name.split("/")
    assert (tenant, task) == ("__", str(task_id))
    assert leaf.endswith("-.._.._etc_passwd")
    assert blob_store.get(stored.storage_ref) == b"x"


def test_blob_refuses_foreign_references(
    blob_store: AzureBlobArtifactStore, container: str
) -> None:
    stored = blob_store.put("tenant-a", uuid4(), "mine.txt", b"mine")
    blob_name = stored.storage_ref.removeprefix(f"blob:{container}/")
    foreign = [
        f"blob:other-container/{blob_name}",
        f"blob:{container}-suffix/{blob_name}",
        f"local:{blob_name}",
        f"s3:{container}/{blob_name}",
        blob_name,
        f"blob:{container}/tenant-a/../tenant-b/x",
        f"blob:{container}//x",
    ]
    for reference in foreign:
        with pytest.raises(ValueError):
            blob_store.get(reference)
        with pytest.raises(ValueError):
            blob_store.delete(reference)
    assert blob_store.get(stored.storage_ref) == b"mine"


def test_from_env_with_connection_string(
    azurite: str, container: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in BLOB_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("WORKBENCH_ARTIFACT_BLOB_CONNECTION_STRING", azurite)
    monkeypatch.setenv("WORKBENCH_ARTIFACT_BLOB_CONTAINER", container)

    store = artifact_store_from_env()
    try:
        assert isinstance(store, AzureBlobArtifactStore)
        assert store.container == container
        stored = store.put("tenant-a", uuid4(), "env.txt", b"from env")  # creates the container
        assert stored.storage_ref.startswith(f"blob:{container}/")
        assert store.get(stored.storage_ref) == b"from env"
    finally:
        store.close()


def test_from_env_with_account_url(monkeypatch: pytest.MonkeyPatch) -> None:
    # Building the store talks to nothing (the container is made on first put), so this
    # checks the wiring without a token endpoint.
    for variable in BLOB_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("WORKBENCH_ARTIFACT_BLOB_ACCOUNT_URL", "https://example.invalid")

    store = artifact_store_from_env()
    try:
        assert isinstance(store, AzureBlobArtifactStore)
        assert store.container == "workbench-artifacts"
    finally:
        store.close()


def test_from_env_without_blob_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in BLOB_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("WORKBENCH_ARTIFACT_DIR", str(tmp_path))

    store = artifact_store_from_env()

    assert isinstance(store, LocalArtifactStore)
    assert store.root == tmp_path.resolve()


def test_local_round_trip_and_delete(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    task_id = uuid4()

    stored = store.put("tenant-a", task_id, "a b.txt", b"local")

    assert stored.storage_ref.startswith(f"local:tenant-a/{task_id}/")
    assert stored.sha256 == hashlib.sha256(b"local").hexdigest()
    assert store.get(stored.storage_ref) == b"local"
    store.delete(stored.storage_ref)
    with pytest.raises(FileNotFoundError):
        store.get(stored.storage_ref)


def test_local_refuses_escapes(tmp_path: Path) -> None:
    root = tmp_path / "store"
    (tmp_path / "secret.txt").write_bytes(b"secret")
    store = LocalArtifactStore(root)

    for reference in ("local:../secret.txt", "local:tenant/../../secret.txt", "blob:c/x"):
        with pytest.raises(ValueError):
            store.get(reference)
        with pytest.raises(ValueError):
            store.delete(reference)
    assert (tmp_path / "secret.txt").exists()

    # A tenant or name made of dots cannot climb out on put either.
    stored = store.put("..", uuid4(), "..", b"inside")
    assert (root / stored.storage_ref.removeprefix("local:")).resolve().is_relative_to(root)
    assert store.get(stored.storage_ref) == b"inside"
