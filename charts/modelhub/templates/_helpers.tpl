{{/* Full name of the operator's objects. */}}
{{- define "modelhub.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "modelhub.serviceAccountName" -}}
{{- default (include "modelhub.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "modelhub.selectorLabels" -}}
app.kubernetes.io/name: modelhub-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "modelhub.labels" -}}
{{ include "modelhub.selectorLabels" . }}
app.kubernetes.io/part-of: modelhub
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
