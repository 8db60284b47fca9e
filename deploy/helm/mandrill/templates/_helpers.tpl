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

{{/*
Labels of the monitoring objects: every object's, component "monitoring" as
deploy/monitoring's, and the value's own (e.g. release: prometheus for a
Prometheus selecting by label), which win. dict "root" $ "extra" <labels>.
*/}}
{{- define "mandrill.monitoringLabels" -}}
{{- $labels := include "mandrill.labels" .root | fromYaml }}
{{- $_ := set $labels "app.kubernetes.io/component" "monitoring" }}
{{- toYaml (mustMergeOverwrite $labels (.extra | default dict)) }}
{{- end }}

{{/*
A file of deploy/monitoring, from the chart's copy in files/monitoring/, with
its job="mandrill-metrics" (the metrics Service of release "mandrill") made
this release's job, in YAML and in JSON spelling. dict "root" $ "path" <file>.
*/}}
{{- define "mandrill.monitoringFile" -}}
{{- $job := printf "%s-metrics" (include "mandrill.fullname" .root) }}
{{- .root.Files.Get .path
    | replace `job="mandrill-metrics"` (printf `job="%s"` $job)
    | replace `job=\"mandrill-metrics\"` (printf `job=\"%s\"` $job) }}
{{- end }}

{{/* A Prometheus duration (the schema checked its form: 1m30s, 500ms) in milliseconds. */}}
{{- define "mandrill.milliseconds" -}}
{{- $unit := dict "y" 31536000000 "w" 604800000 "d" 86400000 "h" 3600000 "m" 60000 "s" 1000 "ms" 1 }}
{{- $total := 0 }}
{{- range regexFindAll "[0-9]+(ms|[ywdhs]|m)" . -1 }}
{{- $count := regexFind "^[0-9]+" . }}
{{- $total = add $total (mul (atoi $count) (get $unit (trimPrefix $count .))) }}
{{- end }}
{{- $total }}
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
{{- if and .Values.store.sqlite.existingClaim (ne .Values.store.type "sqlite") }}
{{- fail "store.sqlite.existingClaim needs store.type=sqlite: with PostgreSQL the pod stores nothing and mounts no claim" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not (and .Values.metrics.enabled .Values.metrics.service.enabled)) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled and metrics.service.enabled: the ServiceMonitor scrapes the metrics Service" }}
{{- end }}
{{- with .Values.metrics.serviceMonitor }}
{{- $interval := include "mandrill.milliseconds" .interval | int64 }}
{{- if eq $interval 0 }}
{{- fail "metrics.serviceMonitor.interval must be longer than 0: Prometheus would never scrape" }}
{{- end }}
{{- if gt (include "mandrill.milliseconds" .scrapeTimeout | int64) $interval }}
{{- fail "metrics.serviceMonitor.scrapeTimeout must not exceed metrics.serviceMonitor.interval: Prometheus refuses such a scrape config" }}
{{- end }}
{{- end }}
{{- end }}
