"""Azurite, Microsoft's Azure Storage emulator, as a subprocess for tests of the blob store.

It comes from the npm registry into a git-ignored cache directory on first use, so the
tests need Node.js and npm on PATH (the machines have both) but no Docker. Without npm the
fixture fails loudly: silently skipping would hide that the blob store went untested.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# 3.35.0 is the last Azurite whose `engines` admits Node 20 (3.36 wants >=21, 3.37 >=22), and
# Node 20 is what the machines have. --skipApiVersionCheck lets it accept the newer REST API
# versions that current azure-storage-blob releases send.
AZURITE_VERSION = "3.35.0"
CACHE_DIR = Path(__file__).resolve().parents[2] / ".cache" / "azurite"

# Azurite's fixed development account, documented by Microsoft; not a secret.
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

START_TIMEOUT = 30.0
INSTALL_TIMEOUT = 300


def connection_string(port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT_NAME};"
    )


def _installed_version(directory: Path) -> str | None:
    try:
        manifest = json.loads((directory / "node_modules/azurite/package.json").read_text())
    except (OSError, ValueError):
        return None
    return manifest.get("version")


def ensure_installed(directory: Path = CACHE_DIR) -> Path:
    """The `azurite-blob` launcher, installing the pinned Azurite first if it is missing."""
    launcher = directory / "node_modules" / ".bin" / "azurite-blob"
    if launcher.exists() and _installed_version(directory) == AZURITE_VERSION:
        return launcher
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(
            "npm is not on PATH: the Azure Blob artifact store tests run against Azurite, "
            f"installed with `npm install --prefix {directory} azurite@{AZURITE_VERSION}`. "
            "Install Node.js and npm (Debian: apt-get install nodejs npm).",
            pytrace=False,
        )
    directory.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(  # noqa: S603 - npm from PATH, fixed arguments
        [npm, "install", "--prefix", str(directory), "--no-audit", "--no-fund",
         f"azurite@{AZURITE_VERSION}"],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        check=False,
    )  # fmt: skip
    if done.returncode != 0 or not launcher.exists():
        pytest.fail(
            f"npm install of azurite@{AZURITE_VERSION} failed ({done.returncode}):\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}",
            pytrace=False,
        )
    return launcher


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def running_azurite(location: Path) -> Iterator[str]:
    """Azurite's blob service on a free loopback port, its data under `location`; yields the
    connection string and stops the process on exit."""
    launcher = ensure_installed()
    port = _free_port()
    location.mkdir(parents=True, exist_ok=True)
    log_path = location / "azurite.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - the launcher we installed, fixed arguments
            [
                str(launcher),
                "--blobHost", "127.0.0.1",
                "--blobPort", str(port),
                "--location", str(location),
                "--silent",
                "--skipApiVersionCheck",
                "--loose",
                # Azurite reports telemetry to an outside endpoint by default; tests must
                # not reach beyond loopback.
                "--disableTelemetry",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Node's own warnings (deprecations on newer Node) are noise in the log.
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )  # fmt: skip
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not _answers(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"Azurite did not start on port {port} (exit {process.poll()}):\n"
                        + log_path.read_text(errors="replace")[-2000:],
                        pytrace=False,
                    )
                time.sleep(0.05)
            yield connection_string(port)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
