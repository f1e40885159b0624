{{- define "bridge-host.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "bridge-host.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "bridge-host.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The config with the health listener the probes use. */}}
{{- define "bridge-host.config" -}}
{{- $config := .Values.config -}}
{{- if and .Values.healthCheck.enabled (not (contains "health_listen" $config)) -}}
{{- if contains "[bridge]" $config -}}
{{- $config = replace "[bridge]" (printf "[bridge]\nhealth_listen = \"0.0.0.0:%v\"" .Values.healthPort) $config -}}
{{- else -}}
{{- $config = printf "%s\n[bridge]\nhealth_listen = \"0.0.0.0:%v\"\n" $config .Values.healthPort -}}
{{- end -}}
{{- end -}}
{{- if not (contains "plugin_cache_dir" $config) -}}
{{- if contains "[bridge]" $config -}}
{{- $config = replace "[bridge]" "[bridge]\nplugin_cache_dir = \"/var/cache/bridge-host\"" $config -}}
{{- else -}}
{{- $config = printf "%s\n[bridge]\nplugin_cache_dir = \"/var/cache/bridge-host\"\n" $config -}}
{{- end -}}
{{- end -}}
{{- $config -}}
{{- end -}}
