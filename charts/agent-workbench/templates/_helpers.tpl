{{/* Names */}}
{{- define "workbench.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "workbench.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "workbench.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "workbench.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "workbench.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Labels. Call with (dict "root" $ "component" "api"). */}}
{{- define "workbench.selectorLabels" -}}
app.kubernetes.io/name: {{ include "workbench.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{- define "workbench.labels" -}}
helm.sh/chart: {{ include "workbench.chart" .root }}
{{ include "workbench.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: agent-workbench
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{/* Pod labels: the selector, the workload identity opt-in, extra labels.
     Call with (dict "root" $ "component" "api" "group" "" "extra" .Values.api.podLabels). */}}
{{- define "workbench.podLabels" -}}
{{ include "workbench.labels" . }}
{{- with .group }}
agent-workbench/worker-group: {{ . }}
{{- end }}
{{- if .root.Values.workloadIdentity.enabled }}
azure.workload.identity/use: "true"
{{- end }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The image reference: a digest pins it, else the tag (default: appVersion). */}}
{{- define "workbench.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* A secretKeyRef env var. Call with (dict "root" $ "env" "NAME" "ref" .Values.secrets.x). */}}
{{- define "workbench.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ default .root.Values.secrets.existingSecret .ref.name | required (printf "a Secret name for %s (secrets.existingSecret or its own name)" .env) }}
      key: {{ .ref.key }}
{{- end }}

{{/* Environment shared by the API, the dispatcher and workers. Call with
     (dict "root" $ "component" "api|dispatcher|worker|migrate"). */}}
{{- define "workbench.env" -}}
{{- $v := .root.Values }}
{{- include "workbench.secretEnv" (dict "root" .root "env" "DATABASE_URL" "ref" $v.secrets.databaseUrl) }}
- name: WORKBENCH_DATA_DIR
  value: /tmp/workbench
{{- if ne .component "migrate" }}
- name: WORKBENCH_LANES_FILE
  value: /etc/workbench/lanes.yaml
- name: WORKBENCH_AGENTS_FILE
  value: /etc/workbench/agents.yaml
{{- end }}
{{- if $v.database.azureEntra }}
- name: AZURE_POSTGRES_ENTRA
  value: "1"
{{- end }}
{{- if has .component (list "api" "worker") }}
- name: WORKBENCH_ARTIFACT_DIR
  value: /var/lib/workbench/artifacts
{{- if $v.secrets.openaiApiKey.enabled }}
{{ include "workbench.secretEnv" (dict "root" .root "env" "OPENAI_API_KEY" "ref" $v.secrets.openaiApiKey) }}
{{- end }}
{{- end }}
{{- if ne .component "migrate" }}
{{- if $v.secrets.serviceBusConnectionString.enabled }}
{{ include "workbench.secretEnv" (dict "root" .root "env" "SERVICEBUS_CONNECTION_STRING" "ref" $v.secrets.serviceBusConnectionString) }}
{{- end }}
{{- with $v.serviceBus.namespace }}
- name: SERVICEBUS_NAMESPACE
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Volumes. Call with (dict "root" $ "component" "..."). */}}
{{- define "workbench.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .root.Values.tmpSizeLimit }}
{{- if ne .component "migrate" }}
- name: lanes
  configMap:
    name: {{ include "workbench.fullname" .root }}-lanes
{{- end }}
{{- if has .component (list "api" "worker") }}
- name: artifacts
{{- if .root.Values.artifacts.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .root.Values.artifacts.existingClaim }}
{{- else }}
  emptyDir:
    sizeLimit: {{ .root.Values.artifacts.sizeLimit }}
{{- end }}
{{- end }}
{{- end }}

{{- define "workbench.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if ne .component "migrate" }}
- name: lanes
  mountPath: /etc/workbench
  readOnly: true
{{- end }}
{{- if has .component (list "api" "worker") }}
- name: artifacts
  mountPath: /var/lib/workbench/artifacts
{{- end }}
{{- end }}

{{/* The pod spec fields every workbench pod shares. */}}
{{- define "workbench.podCommon" -}}
serviceAccountName: {{ include "workbench.serviceAccountName" . }}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Scheduling fields. Call with a dict holding nodeSelector, tolerations, affinity,
     topologySpreadConstraints. */}}
{{- define "workbench.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The parsed lanes file. */}}
{{- define "workbench.lanesConfig" -}}
{{- $cfg := fromYaml .Values.lanesFile }}
{{- if hasKey $cfg "Error" }}
{{- fail (printf "lanesFile is not valid YAML: %s" (get $cfg "Error")) }}
{{- end }}
{{- toJson $cfg }}
{{- end }}

{{/* Worker groups over workerDefaults (a key a group sets replaces the default whole), checked against the lanes file, as JSON:
     {"groups": [...]}. */}}
{{- define "workbench.workerGroups" -}}
{{- $cfg := include "workbench.lanesConfig" . | fromJson }}
{{- $lanes := $cfg.lanes | default dict }}
{{- $groups := list }}
{{- $seen := dict }}
{{- range .Values.workerGroups }}
{{- $g := deepCopy $.Values.workerDefaults }}
{{- range $key, $value := . }}
{{- $_ := set $g $key $value }}
{{- end }}
{{- if hasKey $seen $g.name }}
{{- fail (printf "workerGroups: the name %q is used twice" $g.name) }}
{{- end }}
{{- $_ := set $seen $g.name true }}
{{- range $g.lanes }}
{{- if not (hasKey $lanes .) }}
{{- fail (printf "workerGroups[%s]: lane %q is not in lanesFile" $g.name .) }}
{{- end }}
{{- end }}
{{- $groups = append $groups $g }}
{{- end }}
{{- toJson (dict "groups" $groups) }}
{{- end }}
