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

{{/* The Secret that holds the PostgreSQL primary's URL: the user's, or the chart's. */}}
{{- define "folio.postgresSecret" -}}
{{- .Values.postgres.existingSecret | default (printf "%s-postgres" (include "folio.fullname" .)) -}}
{{- end -}}

{{/* The PostgreSQL store's environment (postgres.enabled): the primary's URL and the replicas'. */}}
{{- define "folio.postgresEnv" -}}
- name: FOLIO_STORE
  valueFrom:
    secretKeyRef:
      name: {{ include "folio.postgresSecret" . }}
      key: {{ .Values.postgres.secretKey | quote }}
{{- if .Values.postgres.readUrls }}
- name: FOLIO_READ_URLS
  valueFrom:
    secretKeyRef:
      name: {{ include "folio.fullname" . }}-postgres
      key: FOLIO_READ_URLS
{{- end }}
{{- end -}}
