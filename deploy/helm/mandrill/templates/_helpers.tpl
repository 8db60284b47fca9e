{{/* Names and labels, as `helm create` makes them. */}}

{{- define "mandrill.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name, prefix of every object's name: the release name when it
contains the chart's name (release "mandrill" gives the names
deploy/overlays/cluster-wide has), else <release>-<name>.
*/}}
{{- define "mandrill.fullname" -}}
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

{{- define "mandrill.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "mandrill.labels" -}}
helm.sh/chart: {{ include "mandrill.chart" . }}
app.kubernetes.io/name: {{ include "mandrill.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mandrill
{{- end }}

{{/* The operator's pods: the Deployment's selector, the Service's, the PDB's. */}}
{{- define "mandrill.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mandrill.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The ServiceAccount every binding names. */}}
{{- define "mandrill.subject" -}}
- kind: ServiceAccount
  name: {{ include "mandrill.fullname" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{/* The CrawlJob workers' ServiceAccount (templates/crawl-workers.yaml). */}}
{{- define "mandrill.workerServiceAccount" -}}
{{- printf "%s-crawl-worker" (include "mandrill.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mandrill.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Combinations the schema cannot refuse, refused with a reason (rendered by
deployment.yaml, so every template sees them checked).
*/}}
{{- define "mandrill.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicas > 1 needs leaderElection.enabled=true: without the Lease every replica would act on every request" }}
{{- end }}
{{- if and (gt (int .Values.replicas) 1) (eq .Values.store.type "sqlite") }}
{{- fail "replicas > 1 needs store.type=postgres: the SQLite file is on a ReadWriteOnce volume one pod mounts" }}
{{- end }}
{{- end }}
