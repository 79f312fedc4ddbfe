{{/* Chart name, truncated to the 63 characters Kubernetes allows in a label value. */}}
{{- define "sdshypervisor-csi.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object name. */}}
{{- define "sdshypervisor-csi.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Name of a Service: fullname-suffix within the 63 characters of a DNS-1035 label (Services allow no more,
unlike most objects). Pass (dict "root" $ "suffix" "snapshot-metadata"); the fullname is shortened to fit.
*/}}
{{- define "sdshypervisor-csi.serviceName" -}}
{{- $room := sub 62 (len .suffix) | int -}}
{{- printf "%s-%s" (include "sdshypervisor-csi.fullname" .root | trunc $room | trimSuffix "-") .suffix -}}
{{- end -}}

{{- define "sdshypervisor-csi.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sdshypervisor-csi.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sdshypervisor-csi
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "sdshypervisor-csi.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sdshypervisor-csi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of one component: pass (dict "root" $ "component" "controller"). */}}
{{- define "sdshypervisor-csi.componentLabels" -}}
{{ include "sdshypervisor-csi.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "sdshypervisor-csi.componentSelectorLabels" -}}
{{ include "sdshypervisor-csi.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "sdshypervisor-csi.controllerServiceAccountName" -}}
{{- default (printf "%s-controller" (include "sdshypervisor-csi.fullname" .)) .Values.serviceAccount.controllerName -}}
{{- end -}}

{{- define "sdshypervisor-csi.nodeServiceAccountName" -}}
{{- default (printf "%s-node" (include "sdshypervisor-csi.fullname" .)) .Values.serviceAccount.nodeName -}}
{{- end -}}

{{/* An image reference from {repository, tag, digest}; the digest wins. Pass (dict "image" ... "defaultTag" ...). */}}
{{- define "sdshypervisor-csi.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .defaultTag .image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "sdshypervisor-csi.driverImage" -}}
{{- include "sdshypervisor-csi.image" (dict "image" .Values.image "defaultTag" .Chart.AppVersion) -}}
{{- end -}}

{{/* Name of the Secret holding the socket-API token, empty when no token is configured. */}}
{{- define "sdshypervisor-csi.tokenSecretName" -}}
{{- $secret := .Values.backend.tokenSecret -}}
{{- if $secret.name -}}
{{- $secret.name -}}
{{- else if $secret.create -}}
{{- printf "%s-vbs-token" (include "sdshypervisor-csi.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Where the token Secret is mounted in the driver containers. */}}
{{- define "sdshypervisor-csi.tokenDir" -}}/etc/sdshypervisor-csi/vbs-token{{- end -}}

{{/* Unix socket of the driver inside its pods (an emptyDir in the controller, the kubelet plugin dir on nodes). */}}
{{- define "sdshypervisor-csi.socketDir" -}}/csi{{- end -}}

{{/* The kubelet's plugin directory of this driver on the host. */}}
{{- define "sdshypervisor-csi.nodePluginDir" -}}
{{- printf "%s/plugins/%s" (trimSuffix "/" .Values.node.kubeletDir) .Values.driverName -}}
{{- end -}}

{{/* Leader election arguments shared by every controller sidecar. */}}
{{- define "sdshypervisor-csi.leaderElectionArgs" -}}
- --leader-election
- --leader-election-namespace=$(NAMESPACE)
- --leader-election-lease-duration={{ .Values.sidecars.leaderElection.leaseDuration }}
- --leader-election-renew-deadline={{ .Values.sidecars.leaderElection.renewDeadline }}
- --leader-election-retry-period={{ .Values.sidecars.leaderElection.retryPeriod }}
{{- end -}}

{{/* Security context of every controller container: non-root, no privilege escalation, read-only root. */}}
{{- define "sdshypervisor-csi.restrictedContainerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* Port number of a host:port listen address such as 0.0.0.0:9810 or [::]:9810. */}}
{{- define "sdshypervisor-csi.portOf" -}}
{{- regexFind "[0-9]+$" . -}}
{{- end -}}

{{/*
VolumeAttributesClass (storage.k8s.io/v1) is served from Kubernetes 1.34. With a real cluster Helm knows the
API's kinds from discovery: then trust that (the API may be switched off). `helm template` without a cluster
knows no kinds; fall back to the Kubernetes version.
*/}}
{{- define "sdshypervisor-csi.volumeAttributesClassAvailable" -}}
{{- $apis := .Capabilities.APIVersions -}}
{{- if $apis.Has "storage.k8s.io/v1/VolumeAttributesClass" -}}
true
{{- else if and (not ($apis.Has "storage.k8s.io/v1/StorageClass")) (semverCompare ">=1.34.0-0" .Capabilities.KubeVersion.Version) -}}
true
{{- end -}}
{{- end -}}

{{- define "sdshypervisor-csi.volumeSnapshotClassesEnabled" -}}
{{- $mode := .Values.volumeSnapshotClasses.create -}}
{{- if eq $mode "always" -}}
true
{{- else if and (eq $mode "auto") (or (.Capabilities.APIVersions.Has "snapshot.storage.k8s.io/v1") (.Capabilities.APIVersions.Has "snapshot.storage.k8s.io/v1/VolumeSnapshotClass")) -}}
true
{{- end -}}
{{- end -}}
