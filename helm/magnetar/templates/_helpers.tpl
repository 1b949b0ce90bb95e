{{/*
Names, labels and the shared pieces of every pod spec.
Everything that more than one template needs lives here, so the gateway and the two
Jobs cannot drift apart in how they are configured or secured.
*/}}

{{/* Chart name, overridable. */}}
{{- define "magnetar.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every resource name: <release>-<chart>, or the release name alone when it
already contains the chart name. 52 characters leave room for "-functions-deploy".
*/}}
{{- define "magnetar.fullname" -}}
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

{{/* Name of one component's resources: <fullname>-<component>. */}}
{{- define "magnetar.componentName" -}}
{{- printf "%s-%s" (include "magnetar.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Chart label value: name-version. */}}
{{- define "magnetar.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select a release's pods; never change them after install (selectors are immutable). */}}
{{- define "magnetar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "magnetar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "magnetar.labels" -}}
helm.sh/chart: {{ include "magnetar.chart" . }}
{{ include "magnetar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: magnetar
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of one component: call with (dict "root" $ "component" "gateway"). */}}
{{- define "magnetar.componentLabels" -}}
{{ include "magnetar.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Selector labels of one component. */}}
{{- define "magnetar.componentSelectorLabels" -}}
{{ include "magnetar.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The ServiceAccount all Magnetar pods run as. */}}
{{- define "magnetar.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "magnetar.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference of a component: its own image block overrides the shared one field by
field; a digest, when given, pins the exact bytes and wins over the tag.
Call with (dict "root" $ "image" .Values.gateway.image).
*/}}
{{- define "magnetar.image" -}}
{{- $global := .root.Values.image }}
{{- $own := .image | default dict }}
{{- $repository := $own.repository | default $global.repository }}
{{- $tag := $own.tag | default $global.tag | default .root.Chart.AppVersion }}
{{- $digest := $own.digest | default $global.digest }}
{{- if $digest }}
{{- printf "%s@%s" $repository $digest }}
{{- else }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}
{{- end }}

{{/* Pull policy of a component (own block, else shared). */}}
{{- define "magnetar.imagePullPolicy" -}}
{{- $own := .image | default dict }}
{{- $own.pullPolicy | default .root.Values.image.pullPolicy }}
{{- end }}

{{/* Name of the ConfigMap holding the non-secret settings. */}}
{{- define "magnetar.configMapName" -}}
{{- include "magnetar.fullname" . }}
{{- end }}

{{/* Name of the Secret the chart creates when a credential has no existing Secret. */}}
{{- define "magnetar.secretName" -}}
{{- include "magnetar.fullname" . }}
{{- end }}

{{/* The four credentials the chart wires, in a fixed order. */}}
{{- define "magnetar.credentialNames" -}}
databaseUrl databaseOwnerUrl pulsarAdminToken adminApiKey
{{- end }}

{{/*
Secret that holds one credential: the credential's own existingSecret, else the shared
secrets.existingSecret, else the Secret this chart creates.
Call with (dict "root" $ "name" "databaseUrl").
*/}}
{{- define "magnetar.credentialSecret" -}}
{{- $credential := index .root.Values.secrets .name }}
{{- $credential.existingSecret | default .root.Values.secrets.existingSecret | default (include "magnetar.secretName" .root) }}
{{- end }}

{{/* True ("true") when at least one credential must go into the chart-made Secret. */}}
{{- define "magnetar.createsSecret" -}}
{{- $root := . }}
{{- range $name := splitList " " (include "magnetar.credentialNames" .) }}
{{- $credential := index $root.Values.secrets $name }}
{{- if not ($credential.existingSecret | default $root.Values.secrets.existingSecret) }}true{{ end }}
{{- end }}
{{- end }}

{{/*
Value of a credential for the chart-made Secret. Refuses to render an empty value or one
that still holds the CHANGE-ME placeholder of values.yaml: a release must either name a
real Secret or be given a real value, never ship the placeholder.
*/}}
{{- define "magnetar.credentialValue" -}}
{{- $credential := index .root.Values.secrets .name }}
{{- $value := $credential.value | default "" }}
{{- if or (not $value) (contains "CHANGE-ME" $value) }}
{{- fail (printf "secrets.%s: set secrets.existingSecret (or secrets.%s.existingSecret) to a Secret you manage, or give secrets.%s.value a real value; the CHANGE-ME placeholder is refused" .name .name .name) }}
{{- end }}
{{- $value }}
{{- end }}

{{/* Where the Pulsar superuser token file is mounted. */}}
{{- define "magnetar.pulsarTokenDir" -}}
/var/run/secrets/magnetar/pulsar
{{- end }}

{{/* Where the broker's token secret key is mounted (file "secret.key"). */}}
{{- define "magnetar.pulsarTokenKeyDir" -}}
/var/run/secrets/magnetar/pulsar-token-key
{{- end }}

{{/*
True ("true") when the pod signs tenant role tokens: the chart was given the broker's token
secret key and the pod asks for it. (dict "root" $ "tokenSecretKey" true|false)
*/}}
{{- define "magnetar.mountsTokenSecretKey" -}}
{{- if and .tokenSecretKey .root.Values.pulsar.tokenSecretKey.existingSecret }}true{{ end }}
{{- end }}

{{/*
Ports of the function state storage, from pulsar.stateStorageUrl (bk://h1[:p1],h2[:p2]...;
4181, the BookKeeper client's default, where a host names none), space-separated.
*/}}
{{- define "magnetar.stateStoragePorts" -}}
{{- $authority := .Values.pulsar.stateStorageUrl | trimPrefix "bk://" | splitList "/" | first }}
{{- $ports := list }}
{{- range splitList "," $authority }}
{{- $parts := splitList ":" . }}
{{- $ports = append $ports (ternary (last $parts) "4181" (gt (len $parts) 1)) }}
{{- end }}
{{- $ports | uniq | join " " }}
{{- end }}

{{/*
Refuses to render a release whose tenant producers would all use the superuser token, unless
the values say so on purpose (pulsar.allowSuperuserProducers).
*/}}
{{- define "magnetar.requireProducerIsolation" -}}
{{- if not (or .Values.pulsar.tokenSecretKey.existingSecret .Values.pulsar.allowSuperuserProducers) }}
{{- fail "pulsar.tokenSecretKey.existingSecret is empty: without the broker's token secret key every tenant's producers use the Pulsar superuser token. Name the Secret holding the key (docs/kubernetes.md, section 4), or set pulsar.allowSuperuserProducers=true to accept that (development clusters only)" }}
{{- end }}
{{- end }}

{{/*
True ("true") when the gateway's producers use the superuser token: no signing key and the
values accept that (pulsar.allowSuperuserProducers). Only then is the token mounted into it.
*/}}
{{- define "magnetar.superuserProducers" -}}
{{- if and (not .Values.pulsar.tokenSecretKey.existingSecret) .Values.pulsar.allowSuperuserProducers }}true{{ end }}
{{- end }}

{{/*
True ("true") when /metrics listens beyond the pod's loopback (gateway.metricsHost), so there
is a metrics port to declare, expose, fence and scrape.
*/}}
{{- define "magnetar.metricsExposed" -}}
{{- $host := .Values.gateway.metricsHost }}
{{- if not (or (hasPrefix "127." $host) (eq $host "::1") (eq $host "localhost")) }}true{{ end }}
{{- end }}

{{/* Where the CA bundle is mounted. */}}
{{- define "magnetar.caDir" -}}
/etc/magnetar/ca
{{- end }}

{{/*
Pod-level security context shared by every Magnetar pod. The image's user is numeric
(10001), so runAsNonRoot can be verified by the kubelet.
*/}}
{{- define "magnetar.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{/* Container-level security context shared by every Magnetar container. */}}
{{- define "magnetar.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end }}

{{/* Environment variable that carries each credential. */}}
{{- define "magnetar.credentialEnvVar" -}}
{{- get (dict
      "databaseUrl" "MAGNETAR_DATABASE_URL"
      "databaseOwnerUrl" "MAGNETAR_DATABASE_OWNER_URL"
      "adminApiKey" "MAGNETAR_ADMIN_API_KEY") . }}
{{- end }}

{{/*
Environment of a Magnetar container: non-secret settings come from the ConfigMap (envFrom),
credentials from Secrets. Each container gets only the credentials it uses:
(dict "root" $ "credentials" (list "databaseUrl") "tokenSecretKey" true|false "extraEnv" list).
The token secret key's path is set only where the key is mounted (see magnetar.volumes).
The settings module reads environment variables only (plus the Pulsar token file), hence
credentials in env vars; see the checkov skip annotations for the reasoning.
*/}}
{{- define "magnetar.env" -}}
{{- $root := .root -}}
{{- range $name := .credentials }}
- name: {{ include "magnetar.credentialEnvVar" $name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "magnetar.credentialSecret" (dict "root" $root "name" $name) }}
      key: {{ (index $root.Values.secrets $name).key }}
{{- end }}
{{- if include "magnetar.mountsTokenSecretKey" . }}
# The admin plane signs each tenant's Pulsar role token with the broker's key (tenants/credentials.py).
- name: MAGNETAR_PULSAR_TOKEN_SECRET_KEY_FILE
  value: {{ include "magnetar.pulsarTokenKeyDir" $root }}/secret.key
{{- end }}
{{- if $root.Values.tls.caBundle.enabled }}
# Python's ssl (httpx) and libpq read their trust anchors from these variables.
- name: SSL_CERT_FILE
  value: {{ include "magnetar.caDir" $root }}/{{ $root.Values.tls.caBundle.key }}
- name: PGSSLROOTCERT
  value: {{ include "magnetar.caDir" $root }}/{{ $root.Values.tls.caBundle.key }}
{{- end }}
{{- with .extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* envFrom of a Magnetar container. */}}
{{- define "magnetar.envFrom" -}}
- configMapRef:
    name: {{ include "magnetar.configMapName" . }}
{{- end }}

{{/*
Volumes of a Magnetar pod: scratch space, the Pulsar superuser token when the container
talks to the Pulsar admin API, the broker's token secret key when the container signs tenant
role tokens (the admin plane) and pulsar.tokenSecretKey names a Secret, the CA bundle when TLS is on.
(dict "root" $ "pulsarToken" true|false "tokenSecretKey" true|false)
*/}}
{{- define "magnetar.volumes" -}}
{{- $root := .root -}}
# The root filesystem is read-only; Python and gRPC need a writable /tmp.
- name: tmp
  emptyDir:
    sizeLimit: {{ $root.Values.tmpSizeLimit }}
{{- if .pulsarToken }}
- name: pulsar-token
  secret:
    secretName: {{ include "magnetar.credentialSecret" (dict "root" $root "name" "pulsarAdminToken") }}
    defaultMode: 0440
    items:
      - key: {{ $root.Values.secrets.pulsarAdminToken.key }}
        path: token
{{- end }}
{{- if include "magnetar.mountsTokenSecretKey" . }}
- name: pulsar-token-secret-key
  secret:
    secretName: {{ $root.Values.pulsar.tokenSecretKey.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ $root.Values.pulsar.tokenSecretKey.key }}
        path: secret.key
{{- end }}
{{- with $root -}}
{{- if .Values.tls.caBundle.enabled }}
- name: ca-bundle
  {{- if .Values.tls.caBundle.configMapName }}
  configMap:
    name: {{ .Values.tls.caBundle.configMapName }}
  {{- else }}
  secret:
    secretName: {{ required "tls.caBundle.secretName or tls.caBundle.configMapName is required when tls.caBundle.enabled" .Values.tls.caBundle.secretName }}
  {{- end }}
    defaultMode: 0444
    items:
      - key: {{ .Values.tls.caBundle.key }}
        path: {{ .Values.tls.caBundle.key }}
{{- end }}
{{- end }}
{{- end }}

{{/* Mounts matching magnetar.volumes: (dict "root" $ "pulsarToken" true|false "tokenSecretKey" true|false). */}}
{{- define "magnetar.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .pulsarToken }}
- name: pulsar-token
  mountPath: {{ include "magnetar.pulsarTokenDir" .root }}
  readOnly: true
{{- end }}
{{- if include "magnetar.mountsTokenSecretKey" . }}
- name: pulsar-token-secret-key
  mountPath: {{ include "magnetar.pulsarTokenKeyDir" .root }}
  readOnly: true
{{- end }}
{{- if .root.Values.tls.caBundle.enabled }}
- name: ca-bundle
  mountPath: {{ include "magnetar.caDir" .root }}
  readOnly: true
{{- end }}
{{- end }}

{{/*
Checksums of the settings and chart-made credentials: a change rolls the gateway's pods,
which read both only at start.
*/}}
{{- define "magnetar.configChecksums" -}}
checksum/config: {{ include (print .Template.BasePath "/shared-configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/shared-secret.yaml") . | sha256sum }}
{{- end }}

{{/*
A Job run as a Helm hook: the migrations (pre-install/pre-upgrade) and the function
deployment (post-install/post-upgrade) differ only in these parameters:
(dict "root" $ "component" "migrations" "values" .Values.migrations "args" (list ...)
      "credentials" (list ...) "pulsarToken" false "hook" "pre-install,pre-upgrade" "weight" "0")
*/}}
{{- define "magnetar.hookJob" -}}
{{- $root := .root }}
{{- $values := .values }}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ include "magnetar.componentName" (dict "root" $root "component" .component) }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "magnetar.componentLabels" (dict "root" $root "component" .component) | nindent 4 }}
  annotations:
    helm.sh/hook: {{ .hook }}
    helm.sh/hook-weight: {{ .weight | quote }}
    # A failed Job stays for `kubectl logs` until the next attempt replaces it.
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
    # And Helm prints its pods' logs with the error, so the failed install itself says why.
    helm.sh/hook-output-log-policy: hook-failed
    # Justified security-lint findings (checked by tests/helm/test_chart.py):
    checkov.io/skip1: CKV_K8S_35=Magnetar settings are read from environment variables only (magnetar/settings.py); the credentials a file can carry (the Pulsar superuser token and token secret key) are mounted as files
    checkov.io/skip2: CKV_K8S_43=The image is pinned by tag by default; image.digest pins it by digest and the production-like scenario does
    checkov.io/skip3: CKV_K8S_15=Release images are immutable tags or digests, so IfNotPresent cannot run a stale image and pod starts do not depend on the registry; image.pullPolicy can still be set to Always
spec:
  backoffLimit: {{ $values.backoffLimit }}
  activeDeadlineSeconds: {{ $values.activeDeadlineSeconds }}
  template:
    metadata:
      labels:
        {{- include "magnetar.componentLabels" (dict "root" $root "component" .component) | nindent 8 }}
      {{- with $values.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      restartPolicy: Never
      serviceAccountName: {{ include "magnetar.serviceAccountName" $root }}
      automountServiceAccountToken: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- range . }}
        - name: {{ . }}
        {{- end }}
      {{- end }}
      securityContext:
        {{- include "magnetar.podSecurityContext" $root | nindent 8 }}
      containers:
        - name: {{ .component }}
          image: {{ include "magnetar.image" (dict "root" $root "image" $values.image) | quote }}
          imagePullPolicy: {{ include "magnetar.imagePullPolicy" (dict "root" $root "image" $values.image) }}
          args: {{ toJson .args }}
          envFrom:
            {{- include "magnetar.envFrom" $root | nindent 12 }}
          env:
            {{- include "magnetar.env" (dict "root" $root "credentials" .credentials "extraEnv" $values.extraEnv) | trim | nindent 12 }}
          resources:
            {{- toYaml $values.resources | nindent 12 }}
          securityContext:
            {{- include "magnetar.containerSecurityContext" $root | nindent 12 }}
          volumeMounts:
            {{- include "magnetar.volumeMounts" (dict "root" $root "pulsarToken" .pulsarToken) | nindent 12 }}
      volumes:
        {{- include "magnetar.volumes" (dict "root" $root "pulsarToken" .pulsarToken) | nindent 8 }}
      {{- with $values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
