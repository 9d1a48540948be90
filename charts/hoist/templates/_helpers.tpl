{{/*
The chart's name, or nameOverride.
*/}}
{{- define "hoist.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The objects' full name: fullnameOverride, else the release's name when it
holds the chart's name, else RELEASE-NAME. A release named hoist gives
deploy/'s names: hoist, hoist-metrics, hoist-webhook. At most 55
characters, so that the Services' NAME-metrics and NAME-webhook stay
within the 63 a Service name may have.
*/}}
{{- define "hoist.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 55 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The Lease the replicas elect a leader on: leaderElection.leaseName, else
the full name, so that two releases in one namespace never wait on each
other's lease. `--lease-name` is passed only when it is not hoist's
default (`hoist`), as deploy/ passes none.
*/}}
{{- define "hoist.leaseName" -}}
{{- default (include "hoist.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
The helm.sh/chart label: NAME-VERSION.
*/}}
{{- define "hoist.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The labels every object carries.
*/}}
{{- define "hoist.labels" -}}
helm.sh/chart: {{ include "hoist.chart" . }}
{{ include "hoist.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The labels that select the controller's pods.
*/}}
{{- define "hoist.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hoist.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The controller's ServiceAccount.
*/}}
{{- define "hoist.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hoist.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The namespace hoist watches with rbac.scope=namespace.
*/}}
{{- define "hoist.watchNamespace" -}}
{{- default .Release.Namespace .Values.watchNamespace }}
{{- end }}

{{/*
The image: REPOSITORY:TAG, REPOSITORY:TAG@DIGEST, or REPOSITORY@DIGEST
when a digest is set without a tag.
*/}}
{{- define "hoist.image" -}}
{{- $repository := required "image.repository is required" .Values.image.repository }}
{{- $digest := .Values.image.digest | default "" | toString }}
{{- if and $digest (not (regexMatch "^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$" $digest)) }}
{{- fail (printf "image.digest %q is not a digest: sha256: and 64 hex digits (or sha512: and 128)" $digest) }}
{{- end }}
{{- $tag := .Values.image.tag | default "" | toString }}
{{- if and (not $tag) (not $digest) }}
{{- $tag = .Chart.AppVersion }}
{{- end }}
{{- $repository }}{{ if $tag }}:{{ $tag }}{{ end }}{{ if $digest }}@{{ $digest }}{{ end }}
{{- end }}

{{/*
Values that cannot work together, refused at render time.
*/}}
{{- define "hoist.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) }}
{{- fail (printf "replicas is %d but leaderElection.enabled is false: replicas without leader election would all reconcile the same objects and push over each other; set leaderElection.enabled=true or replicas=1" (int .Values.replicas)) }}
{{- end }}
{{- if not (has .Values.rbac.scope (list "cluster" "namespace")) }}
{{- fail (printf "rbac.scope is %q: it is cluster or namespace" .Values.rbac.scope) }}
{{- end }}
{{- if and .Values.watchNamespace (ne .Values.rbac.scope "namespace") }}
{{- fail "watchNamespace is set but rbac.scope is not namespace: set rbac.scope=namespace to restrict hoist to one namespace" }}
{{- end }}
{{- if and .Values.webhook.ingress.enabled (not .Values.webhook.enabled) }}
{{- fail "webhook.ingress.enabled needs webhook.enabled: the Ingress routes to the webhook Service" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled: the ServiceMonitor scrapes the metrics Service" }}
{{- end }}
{{- if and (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) .Values.rbac.create }}
{{- fail "serviceAccount.create is false and serviceAccount.name is empty: the chart would bind hoist's roles (Secrets, impersonation) to the namespace's default ServiceAccount, which every pod there runs as; name the ServiceAccount hoist runs as" }}
{{- end }}
{{- range $key, $_ := .Values.podLabels }}
{{- if has $key (list "app.kubernetes.io/name" "app.kubernetes.io/instance") }}
{{- fail (printf "podLabels sets %s, which the Deployment's selector sets: the selector would not match its pods; use nameOverride, or another label" $key) }}
{{- end }}
{{- end }}
{{- range $key, $_ := .Values.metrics.serviceMonitor.labels }}
{{- if has $key (list "helm.sh/chart" "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/version" "app.kubernetes.io/managed-by") }}
{{- fail (printf "metrics.serviceMonitor.labels sets %s, one of the chart's own labels; use another label to select the ServiceMonitor" $key) }}
{{- end }}
{{- end }}
{{- if not (has .Values.logFormat (list "text" "json")) }}
{{- fail (printf "logFormat is %q: it is text or json" .Values.logFormat) }}
{{- end }}
{{- end }}

{{/*
The rules of `hoist controller` (deploy/rbac.yaml, word for word), for its
ClusterRole or, with rbac.scope=namespace, its Role.
*/}}
{{- define "hoist.rules" -}}
# get, list and watch: the reconcilers' watch caches (list once, then
# watch), reading an ImageRepository a policy names before the cache has
# it, listing a Receiver's namespace for the objects a webhook names, and
# the Providers and Alerts that route notifications.
# hoist never creates or deletes these objects.
- apiGroups: ["hoist.dev"]
  resources: ["imagerepositories", "imagepolicies", "imageupdateautomations", "receivers", "providers", "alerts"]
  verbs: ["get", "list", "watch"]
# patch: a verified webhook sets the reconcile.hoist.dev/requestedAt
# annotation (a merge patch of that one key), which any replica may
# receive and the leader acts on.
- apiGroups: ["hoist.dev"]
  resources: ["imagerepositories", "imageupdateautomations"]
  verbs: ["patch"]
# patch: results are written with server-side apply to the status
# subresource only (field manager `hoist`).
- apiGroups: ["hoist.dev"]
  resources: ["imagerepositories/status", "imagepolicies/status", "imageupdateautomations/status", "receivers/status", "providers/status", "alerts/status"]
  verbs: ["patch"]
# get: the Secrets that secretRef, certSecretRef, the git and pull
# request secretRefs and a Provider's secretRef name, read one by one
# when needed. No list or watch, so hoist never holds every Secret of
# the cluster.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# get, list, watch: the labels of an ImagePolicy's Namespace, when it
# reads an ImageRepository of another namespace, for that repository's
# spec.accessFrom.namespaceSelectors; the watch re-checks such a policy
# when its Namespace's labels change. (In a namespaced install there is no
# such reference to allow.)
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
# create and patch: Events on new latest tags and pushes; patch updates
# the count of a repeated event instead of creating another.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# impersonate: spec.sync applies, prunes and waits as the ServiceAccount
# that spec.serviceAccountName (or --default-service-account) names, of
# the automation's own namespace, so it can do no more than that account
# may. Without one it runs as hoist itself, which may change nothing.
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["impersonate"]
{{- end }}

{{/*
The rules of `hoist controller --flux` (deploy/flux/rbac.yaml, word for
word).
*/}}
{{- define "hoist.fluxRules" -}}
# get, list and watch: the reconcilers' watch caches, reading an
# ImageRepository a policy names before the cache has it, and reading
# the objects a Receiver lists. hoist never creates or deletes these.
- apiGroups: ["image.toolkit.fluxcd.io"]
  resources: ["imagerepositories", "imagepolicies", "imageupdateautomations"]
  verbs: ["get", "list", "watch"]
# patch: a verified webhook sets the reconcile.fluxcd.io/requestedAt
# annotation (a merge patch of that one key), which any replica may
# receive and the leader acts on.
- apiGroups: ["image.toolkit.fluxcd.io"]
  resources: ["imagerepositories", "imageupdateautomations"]
  verbs: ["patch"]
# get, list and watch: Flux's Receivers, served when they trigger only
# image objects; patch: their status.
- apiGroups: ["notification.toolkit.fluxcd.io"]
  resources: ["receivers"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["notification.toolkit.fluxcd.io"]
  resources: ["receivers/status"]
  verbs: ["patch"]
# patch: results are written with server-side apply to the status
# subresource only (field manager `hoist`).
- apiGroups: ["image.toolkit.fluxcd.io"]
  resources: ["imagerepositories/status", "imagepolicies/status", "imageupdateautomations/status"]
  verbs: ["patch"]
# get: the GitRepository an automation's sourceRef names, read when it
# runs; list: the check at start that Flux's source CRD is installed.
- apiGroups: ["source.toolkit.fluxcd.io"]
  resources: ["gitrepositories"]
  verbs: ["get", "list"]
# get: the Secrets that secretRef, certSecretRef, the GitRepository's
# secretRef and signingKey name, read one by one when needed. No list or
# watch, so hoist never holds every Secret of the cluster.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# get, list, watch: the labels of an ImagePolicy's Namespace, when it
# reads an ImageRepository of another namespace, for that repository's
# spec.accessFrom.namespaceSelectors.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
# create and patch: Events on new latest tags and pushes.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
The rules of `hoist controller --object-level-identity`
(deploy/object-identity/rbac.yaml, word for word).
*/}}
{{- define "hoist.objectIdentityRules" -}}
# get: the ServiceAccount's annotations (eks.amazonaws.com/role-arn,
# azure.workload.identity/client-id and tenant-id,
# gcp.auth.fluxcd.io/workload-identity-provider,
# iam.gke.io/gcp-service-account), read at each scan so that a changed
# or removed annotation takes effect then.
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get"]
# create: a token of that ServiceAccount for the cloud's audience only
# (sts.amazonaws.com, api://AzureADTokenExchange, the Google pool
# provider), asked for when the cached credential nears its expiry.
- apiGroups: [""]
  resources: ["serviceaccounts/token"]
  verbs: ["create"]
{{- end }}

{{/*
The name of the controller's ClusterRole or Role: FULLNAME, or
FULLNAME-flux with flux.enabled (deploy/flux's hoist-flux).
*/}}
{{- define "hoist.roleName" -}}
{{- if .Values.flux.enabled }}
{{- printf "%s-flux" (include "hoist.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- include "hoist.fullname" . }}
{{- end }}
{{- end }}
