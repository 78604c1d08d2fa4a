{{/* The release's base name, cut to the 63 characters a DNS label allows. */}}
{{- define "folio.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "folio.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "folio.querySelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: query
{{- end -}}

{{- define "folio.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "folio.claim" -}}
{{- .Values.index.existingClaim | default (printf "%s-index" (include "folio.fullname" .)) -}}
{{- end -}}

{{- define "folio.secret" -}}
{{- .Values.apiKeys.existingSecret | default (printf "%s-keys" (include "folio.fullname" .)) -}}
{{- end -}}
