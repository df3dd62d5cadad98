{{/*
Names and labels. The fullname (default `mcp-warden-operator`) names every namespaced object and
is the `app.kubernetes.io/name` label the webhook's objectSelector excludes, so the injector never
waits on itself.
*/}}

{{- define "mcp-warden.fullname" -}}
{{- default "mcp-warden-operator" .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{/* The operator pods' name label; the webhook excludes pods carrying it. */}}
{{- define "mcp-warden.name" -}}
mcp-warden-operator
{{- end -}}

{{- define "mcp-warden.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mcp-warden.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mcp-warden.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mcp-warden.labels" -}}
{{ include "mcp-warden.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: mcp-warden
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "mcp-warden.chart" . }}
{{- end -}}

{{- define "mcp-warden.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mcp-warden.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding tls.crt, tls.key and ca.crt (generated, or written by cert-manager). */}}
{{- define "mcp-warden.tlsSecretName" -}}
{{- printf "%s-tls" (include "mcp-warden.fullname" .) -}}
{{- end -}}

{{/* The Secret holding the identity signing key (`key.pem`): the user's, or the generated one. */}}
{{- define "mcp-warden.identitySecretName" -}}
{{- .Values.upstreamAuth.identity.existingSecret | default (printf "%s-identity" (include "mcp-warden.fullname" .)) -}}
{{- end -}}

{{/* The certificate's DNS names: the Service, as every client may spell it. */}}
{{- define "mcp-warden.dnsNames" -}}
{{- $name := include "mcp-warden.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- list $name (printf "%s.%s" $name $ns) (printf "%s.%s.svc" $name $ns) (printf "%s.%s.svc.cluster.local" $name $ns) | toJson -}}
{{- end -}}

{{/* The URL sidecars reach the push API at (`--operator-url`). */}}
{{- define "mcp-warden.operatorUrl" -}}
{{- printf "https://%s.%s.svc:%d" (include "mcp-warden.fullname" .) .Release.Namespace (int .Values.ports.push) -}}
{{- end -}}

{{- define "mcp-warden.image" -}}
{{- printf "%s:%s" .image.repository (default .appVersion .image.tag) -}}
{{- end -}}

{{/* Where the TLS Secret is mounted in the operator container. */}}
{{- define "mcp-warden.tlsDir" -}}
/etc/mcp-warden/tls
{{- end -}}

{{/* Cluster-scoped objects carry the release namespace, so two installs never collide. */}}
{{- define "mcp-warden.clusterName" -}}
{{- printf "%s-%s" (include "mcp-warden.fullname" .) .Release.Namespace | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* What both webhook entries share: the endpoint (Service, path /mutate), the caBundle (self-signed
mode) and the rule (pod CREATE). Called with (dict "root" $ "caBundle" ...). */}}
{{- define "mcp-warden.webhookEntry" }}
    admissionReviewVersions: ["v1"]
    sideEffects: None
    failurePolicy: {{ .root.Values.webhook.failurePolicy }}
    matchPolicy: Equivalent
    timeoutSeconds: {{ .root.Values.webhook.timeoutSeconds }}
    reinvocationPolicy: {{ .root.Values.webhook.reinvocationPolicy }}
    clientConfig:
      service:
        name: {{ include "mcp-warden.fullname" .root }}
        namespace: {{ .root.Release.Namespace }}
        path: /mutate
        port: 443
      {{- with .caBundle }}
      caBundle: {{ . }}
      {{- end }}
    rules:
      - apiGroups: [""]
        apiVersions: ["v1"]
        operations: ["CREATE"]
        resources: ["pods"]
        scope: Namespaced
{{- end }}
