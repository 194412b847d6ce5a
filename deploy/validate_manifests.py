"""Validate every Kubernetes object in YAML files; exit 1 when any is invalid.

Built-in kinds: kubernetes-validate's strict schemas (unknown fields are errors) for
each Kubernetes version given. Unlike the kubernetes-validate command, a kind it has
no schema for is an error here, not a warning. Custom resources (KEDA, Prometheus
Operator): validate_crds.py's strict pydantic models.

    python deploy/validate_manifests.py -k 1.33 -k 1.37 FILE.yaml...
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import kubernetes_validate.utils as kv
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from validate_crds import CRD_KINDS, validate_document

# kubernetes-validate reads and parses the (large) shared definitions file for every
# object; the files never change during a run.
kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)


def problems_of(document: object, versions: list[str]) -> list[str]:
    if not isinstance(document, dict) or not document.get("apiVersion") or not document.get("kind"):
        return ["not a Kubernetes object (apiVersion and kind are required)"]
    if document["kind"] in CRD_KINDS:
        return validate_document(document)
    problems = []
    for version in versions:
        try:
            kv.validate(document, version, strict=True)
        except kv.ValidationError as error:
            path = ".".join(str(part) for part in error.path) or "(root)"
            problems.append(f"k8s {version}: {path}: {error.message}")
        except kv.SchemaNotFoundError as error:
            problems.append(error.message)
        except kv.VersionNotSupportedError as error:
            raise SystemExit(f"validate_manifests: {error.message}") from error
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", "--kubernetes-version", action="append", required=True)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    objects = failures = 0
    for name in args.files:
        try:
            documents = [doc for doc in yaml.safe_load_all(Path(name).read_text()) if doc]
        except yaml.YAMLError as error:
            print(f"ERROR {name}: not YAML: {error}")
            failures += 1
            continue
        if not documents:
            print(f"ERROR {name}: no objects")
            failures += 1
        for document in documents:
            objects += 1
            problems = problems_of(document, args.kubernetes_version)
            if problems:
                failures += 1
                kind = document.get("kind") if isinstance(document, dict) else "?"
                meta = document.get("metadata") if isinstance(document, dict) else None
                label = f"{kind}/{(meta or {}).get('name')}"
                for problem in problems:
                    print(f"ERROR {name}: {label}: {problem}")
    versions = ", ".join(args.kubernetes_version)
    print(
        f"validate_manifests: {objects} objects in {len(args.files)} files "
        f"(Kubernetes {versions}; custom resources by their CRD models), {failures} invalid"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
