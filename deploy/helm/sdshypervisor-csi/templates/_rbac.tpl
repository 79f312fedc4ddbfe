{{/*
Binds a ClusterRole (and, with "leases", a Role for leader election in the release namespace) to the
controller ServiceAccount. Pass (dict "root" $ "name" "provisioner" "rules" <yaml string> "namespacedRules" <yaml string>).
*/}}
{{- define "sdshypervisor-csi.controllerRbac" -}}
{{- $root := .root -}}
{{- $fullname := include "sdshypervisor-csi.fullname" $root -}}
{{- $roleName := printf "%s-%s" $fullname .name -}}
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ $roleName }}
  labels:
    {{- include "sdshypervisor-csi.componentLabels" (dict "root" $root "component" "controller") | nindent 4 }}
rules:
  {{- .rules | trim | nindent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ $roleName }}
  labels:
    {{- include "sdshypervisor-csi.componentLabels" (dict "root" $root "component" "controller") | nindent 4 }}
subjects:
  - kind: ServiceAccount
    name: {{ include "sdshypervisor-csi.controllerServiceAccountName" $root }}
    namespace: {{ $root.Release.Namespace }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ $roleName }}
{{- if .namespacedRules }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ $roleName }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "sdshypervisor-csi.componentLabels" (dict "root" $root "component" "controller") | nindent 4 }}
rules:
  {{- .namespacedRules | trim | nindent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ $roleName }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "sdshypervisor-csi.componentLabels" (dict "root" $root "component" "controller") | nindent 4 }}
subjects:
  - kind: ServiceAccount
    name: {{ include "sdshypervisor-csi.controllerServiceAccountName" $root }}
    namespace: {{ $root.Release.Namespace }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ $roleName }}
{{- end }}
{{- end -}}

{{/* Leader election through Leases in the release namespace: every controller sidecar needs exactly this. */}}
{{- define "sdshypervisor-csi.leaseRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "watch", "list", "delete", "update", "create"]
{{- end -}}
