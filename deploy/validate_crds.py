"""Validate KEDA and Prometheus Operator objects against their CRDs' models.

kubernetes-validate knows only the built-in kinds. The custom resources the chart
renders (ScaledObject, TriggerAuthentication, ServiceMonitor, PodMonitor,
PrometheusRule) are checked here with the pydantic models that the
`cloudcoil-models-keda` and `cloudcoil-models-prometheus-operator` packages generate
from the upstream CRDs. The generated models ignore unknown fields and accept Python
field names; before validating, every model class reachable from the resource is set
to forbid extra fields, accept only the wire (camelCase) names, and validate strictly
(no "3" for 3), then rebuilt, children first. A misspelled or misplaced field fails.

    python deploy/validate_crds.py FILE.yaml...     # exit 1 when any object fails

`validate_document` is also used by validate_manifests.py.
"""

from __future__ import annotations

import importlib
import sys
import typing
from pathlib import Path
from typing import Any

import pydantic
import yaml

# (API group, kind) -> (module, class). Azure Monitor managed Prometheus serves the
# Prometheus Operator's monitors under its own group with the same schema.
MODELS: dict[tuple[str, str], tuple[str, str]] = {
    ("keda.sh", "ScaledObject"): ("cloudcoil.models.keda.v1alpha1", "ScaledObject"),
    ("keda.sh", "ScaledJob"): ("cloudcoil.models.keda.v1alpha1", "ScaledJob"),
    ("keda.sh", "TriggerAuthentication"): (
        "cloudcoil.models.keda.v1alpha1",
        "TriggerAuthentication",
    ),
    ("keda.sh", "ClusterTriggerAuthentication"): (
        "cloudcoil.models.keda.v1alpha1",
        "ClusterTriggerAuthentication",
    ),
    ("monitoring.coreos.com", "ServiceMonitor"): (
        "cloudcoil.models.prometheus_operator.v1",
        "ServiceMonitor",
    ),
    ("monitoring.coreos.com", "PodMonitor"): (
        "cloudcoil.models.prometheus_operator.v1",
        "PodMonitor",
    ),
    ("monitoring.coreos.com", "PrometheusRule"): (
        "cloudcoil.models.prometheus_operator.v1",
        "PrometheusRule",
    ),
}
GROUP_ALIASES = {"azmonitoring.coreos.com": "monitoring.coreos.com"}
CRD_KINDS = frozenset(kind for _, kind in MODELS)

_strict_models: dict[tuple[str, str], type[pydantic.BaseModel]] = {}


def _model_classes(annotation: Any) -> typing.Iterator[type[pydantic.BaseModel]]:
    """The pydantic model classes inside a field annotation (Optional, list, dict,
    Annotated, unions...)."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        yield annotation
        return
    if isinstance(annotation, typing.ForwardRef | str):
        return
    for argument in typing.get_args(annotation):
        yield from _model_classes(argument)


def _forbid_extra(model: type[pydantic.BaseModel], done: set[type]) -> None:
    """Post-order: children are rebuilt before the models that embed them, since a
    parent's schema copies its children's schemas when it is built."""
    if model in done:
        return
    done.add(model)
    for field in model.model_fields.values():
        for child in _model_classes(field.annotation):
            _forbid_extra(child, done)
    model.model_config["extra"] = "forbid"
    model.model_config["strict"] = True
    model.model_config["populate_by_name"] = False
    model.model_config["validate_by_name"] = False
    model.model_config["validate_by_alias"] = True
    model.model_rebuild(force=True)


def strict_model(group: str, kind: str) -> type[pydantic.BaseModel]:
    key = (GROUP_ALIASES.get(group, group), kind)
    if key not in _strict_models:
        if key not in MODELS:
            raise LookupError(f"no model for {group}/{kind}")
        module_name, class_name = MODELS[key]
        model = getattr(importlib.import_module(module_name), class_name)
        _forbid_extra(model, set())
        _strict_models[key] = model
    return _strict_models[key]


def validate_document(document: dict[str, Any]) -> list[str]:
    """Problems of one CRD object; empty when it is valid."""
    api_version = str(document.get("apiVersion", ""))
    kind = str(document.get("kind", ""))
    group, _, version = api_version.rpartition("/")
    try:
        model = strict_model(group, kind)
    except LookupError as error:
        return [str(error)]
    canonical = GROUP_ALIASES.get(group, group)
    expected = model.model_fields["api_version"].default
    wire = dict(document, apiVersion=f"{canonical}/{version}")
    if wire["apiVersion"] != expected:
        return [f"apiVersion {api_version}: the model knows {expected}"]
    try:
        model.model_validate(wire)
    except pydantic.ValidationError as error:
        return [
            f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
            for problem in error.errors()
        ]
    return []


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def main(paths: list[str]) -> int:
    failures = checked = 0
    for name in paths:
        for document in load_documents(Path(name)):
            if document.get("kind") not in CRD_KINDS:
                continue
            checked += 1
            label = f"{name}: {document['kind']}/{document.get('metadata', {}).get('name')}"
            problems = validate_document(document)
            for problem in problems:
                print(f"ERROR {label}: {problem}")
            failures += bool(problems)
    print(f"validate_crds: {checked} custom resources, {failures} invalid")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
