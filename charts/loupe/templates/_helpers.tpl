{{/*
Names, labels and the values every template shares. Resource names follow Helm's usual
<release>-<chart> rule, cut to 63 characters (DNS labels); the agent's and the controller's
objects add -agent and -controller, so the base is cut to 52.
*/}}
{{- define "loupe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 52 | trimSuffix "-" }}
{{- end }}

{{- define "loupe.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "loupe.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object; selectors use only the stable subset (loupe.selectorLabels). */}}
{{- define "loupe.labels" -}}
helm.sh/chart: {{ include "loupe.chart" . }}
app.kubernetes.io/name: {{ include "loupe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: loupe
{{- end }}

{{- define "loupe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "loupe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "loupe.agent.fullname" -}}{{ include "loupe.fullname" . }}-agent{{- end }}
{{- define "loupe.controller.fullname" -}}{{ include "loupe.fullname" . }}-controller{{- end }}

{{- define "loupe.agent.serviceAccountName" -}}
{{- if .Values.agent.serviceAccount.create }}
{{- default (include "loupe.agent.fullname" .) .Values.agent.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.agent.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "loupe.controller.serviceAccountName" -}}
{{- if .Values.controller.serviceAccount.create }}
{{- default (include "loupe.controller.fullname" .) .Values.controller.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.controller.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, or repository@digest when a digest is pinned. */}}
{{- define "loupe.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The controller's in-cluster name: what agents and the helm test dial, and what its certificate names. */}}
{{- define "loupe.controller.host" -}}
{{- printf "%s.%s.svc.%s" (include "loupe.controller.fullname" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{- define "loupe.controller.address" -}}
{{- printf "%s:%d" (include "loupe.controller.host" .) (int .Values.controller.service.port) }}
{{- end }}

{{/* Secret names: the chart's own (helm, cert-manager) or the user's (existingSecret). */}}
{{- define "loupe.tls.controllerSecret" -}}
{{- if eq .Values.tls.source "existingSecret" }}
{{- .Values.tls.existingSecret.controller }}
{{- else }}
{{- include "loupe.controller.fullname" . }}-tls
{{- end }}
{{- end }}

{{- define "loupe.tls.agentSecret" -}}
{{- if eq .Values.tls.source "existingSecret" }}
{{- .Values.tls.existingSecret.agent }}
{{- else }}
{{- include "loupe.agent.fullname" . }}-tls
{{- end }}
{{- end }}

{{- define "loupe.token.secret" -}}
{{- default (printf "%s-token" (include "loupe.fullname" .)) .Values.token.existingSecret }}
{{- end }}

{{/*
The controller certificate's DNS names: the Service in every form a client may dial, and
localhost for `kubectl port-forward` (the name is worthless to an attacker: only this
release's CA vouches for it).
*/}}
{{- define "loupe.tls.controllerNames" -}}
{{- $svc := include "loupe.controller.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (include "loupe.controller.host" .) "localhost" | toJson }}
{{- end }}

{{/*
Generated material, made once per render: templates share .Values (one map), so the first
include stores it there and every later one (the Secrets, the checksum annotations) gets
the same bytes. An upgrade reuses what is in the cluster (lookup), so that pods do not roll
and agents do not reconnect for nothing; `helm template` has no cluster and makes new
material every time (hence manifests/ uses existing Secrets).
*/}}
{{- define "loupe.tls.material" -}}
{{- if not (hasKey .Values "__loupeTLSMaterial") }}
{{- $ns := .Release.Namespace }}
{{- $oldController := lookup "v1" "Secret" $ns (include "loupe.tls.controllerSecret" .) }}
{{- $oldAgent := lookup "v1" "Secret" $ns (include "loupe.tls.agentSecret" .) }}
{{- $reuse := and $oldController $oldAgent $oldController.data $oldAgent.data }}
{{- range list "ca.crt" "tls.crt" "tls.key" }}
{{- if $reuse }}{{ $reuse = and (index $oldController.data .) (index $oldAgent.data .) }}{{ end }}
{{- end }}
{{- $material := dict }}
{{- if $reuse }}
{{- $material = dict "controller" $oldController.data "agent" $oldAgent.data }}
{{- else }}
{{- $days := int .Values.tls.validityDays }}
{{- $ca := genCA (printf "%s CA" (include "loupe.fullname" .)) $days }}
{{- $names := include "loupe.tls.controllerNames" . | fromJsonArray }}
{{- $server := genSignedCert (include "loupe.controller.host" .) (list "127.0.0.1" "::1") $names $days $ca }}
{{- $client := genSignedCert (printf "%s.%s" (include "loupe.agent.fullname" .) $ns) nil nil $days $ca }}
{{- $material = dict
      "controller" (dict "ca.crt" ($ca.Cert | b64enc) "tls.crt" ($server.Cert | b64enc) "tls.key" ($server.Key | b64enc))
      "agent" (dict "ca.crt" ($ca.Cert | b64enc) "tls.crt" ($client.Cert | b64enc) "tls.key" ($client.Key | b64enc)) }}
{{- end }}
{{- $_ := set .Values "__loupeTLSMaterial" $material }}
{{- end }}
{{- get .Values "__loupeTLSMaterial" | toJson }}
{{- end }}

{{- define "loupe.token.value" -}}
{{- if not (hasKey .Values "__loupeToken") }}
{{- $old := lookup "v1" "Secret" .Release.Namespace (include "loupe.token.secret" .) }}
{{- if and $old $old.data (index $old.data "token") }}
{{- $_ := set .Values "__loupeToken" (index $old.data "token" | b64dec) }}
{{- else }}
{{- $_ := set .Values "__loupeToken" (randAlphaNum 48) }}
{{- end }}
{{- end }}
{{- get .Values "__loupeToken" }}
{{- end }}

{{/*
What the pods read at start, hashed into their annotations so that a change rolls them.
Generated material is hashed itself (the same bytes the Secrets get); existing Secrets by
name only: rotating an existing Secret's content needs `kubectl rollout restart`.
*/}}
{{- define "loupe.checksum.tls" -}}
{{- if not .Values.tls.enabled }}
{{- "tls-disabled" | sha256sum }}
{{- else if eq .Values.tls.source "helm" }}
{{- include "loupe.tls.material" . | sha256sum }}
{{- else }}
{{- printf "%s/%s/%s" .Values.tls.source (include "loupe.tls.controllerSecret" .) (include "loupe.tls.agentSecret" .) | sha256sum }}
{{- end }}
{{- end }}

{{- define "loupe.checksum.token" -}}
{{- if and .Values.token.enabled (not .Values.token.existingSecret) }}
{{- include "loupe.token.value" . | sha256sum }}
{{- else }}
{{- printf "%v/%s" .Values.token.enabled .Values.token.existingSecret | sha256sum }}
{{- end }}
{{- end }}
