{{/* Names and labels. */}}
{{- define "rwfix.fullname" -}}
{{- if contains "rwfix" .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- else -}}{{ printf "%s-rwfix" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "rwfix.selectorLabels" -}}
app.kubernetes.io/name: rwfix
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rwfix.labels" -}}
{{ include "rwfix.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The collision policy: the configured one, else by mode (see values.yaml). */}}
{{- define "rwfix.policy" -}}
{{- if .Values.config.collision.policy -}}{{ .Values.config.collision.policy }}{{- else if eq .Values.mode "deployment" -}}keep_distinct{{- else -}}merge{{- end -}}
{{- end -}}

{{/* rwfix.yml: the configuration, with credentials as files mounted from Secrets. */}}
{{- define "rwfix.config" -}}
{{- $collision := merge (dict "policy" (include "rwfix.policy" .)) (omit .Values.config.collision "policy") -}}
{{- $cfg := dict "presets" .Values.config.presets "collision" $collision -}}
{{- with .Values.config.relabel_configs }}{{ $_ := set $cfg "relabel_configs" . }}{{ end -}}
{{- with .Values.config.limits }}{{ $_ := set $cfg "limits" . }}{{ end -}}
{{- $ups := list -}}
{{- range $i, $u := .Values.upstreams -}}
{{- $o := dict "name" $u.name "url" $u.url -}}
{{- with $u.timeout }}{{ $_ := set $o "timeout" . }}{{ end -}}
{{- with $u.headers }}{{ $_ := set $o "headers" . }}{{ end -}}
{{- with $u.forwardHeaders }}{{ $_ := set $o "forward_headers" . }}{{ end -}}
{{- with $u.basicAuth }}{{ $_ := set $o "basic_auth" (dict "username" .username "password_file" (printf "/etc/rwfix/secrets/%d/%s" $i .passwordSecret.key)) }}{{ end -}}
{{- with $u.bearerTokenSecret }}{{ $_ := set $o "authorization" (dict "credentials_file" (printf "/etc/rwfix/secrets/%d/%s" $i .key)) }}{{ end -}}
{{- $ups = append $ups $o -}}
{{- end -}}
{{- $_ := set $cfg "upstreams" $ups -}}
{{ toYaml $cfg }}
{{- end -}}

{{/* The rwfix container, the same in every mode. */}}
{{- define "rwfix.container" -}}
- name: rwfix
  image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    - --config.file=/etc/rwfix/rwfix.yml
    - --storage.path=/var/lib/rwfix
    - --web.listen-address=:9201
    {{- if .Values.web.enableLifecycle }}
    - --web.enable-lifecycle
    {{- end }}
    {{- range .Values.extraArgs }}
    - {{ . }}
    {{- end }}
  ports:
    - name: rwfix
      containerPort: 9201
  readinessProbe:
    httpGet: {path: /-/ready, port: rwfix}
  livenessProbe:
    httpGet: {path: /-/healthy, port: rwfix}
  resources:
    {{- toYaml .Values.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: rwfix-config
      mountPath: /etc/rwfix
    - name: rwfix-state
      mountPath: /var/lib/rwfix
    {{- range $i, $u := .Values.upstreams }}
    {{- if or $u.basicAuth $u.bearerTokenSecret }}
    - name: rwfix-secret-{{ $i }}
      mountPath: /etc/rwfix/secrets/{{ $i }}
      readOnly: true
    {{- end }}
    {{- end }}
{{- end -}}

{{/* The volumes rwfix needs; the state volume unless a claim template provides it. */}}
{{- define "rwfix.volumes" -}}
- name: rwfix-config
  configMap:
    name: {{ include "rwfix.fullname" . }}
{{- if not .Values.persistence.enabled }}
- name: rwfix-state
  emptyDir: {}
{{- else if eq .Values.mode "deployment" }}
- name: rwfix-state
  persistentVolumeClaim:
    claimName: {{ include "rwfix.fullname" . }}-state
{{- end }}
{{- range $i, $u := .Values.upstreams }}
{{- $secret := "" }}{{ $key := "" }}
{{- if $u.basicAuth }}{{ $secret = $u.basicAuth.passwordSecret.name }}{{ $key = $u.basicAuth.passwordSecret.key }}{{ end }}
{{- if $u.bearerTokenSecret }}{{ $secret = $u.bearerTokenSecret.name }}{{ $key = $u.bearerTokenSecret.key }}{{ end }}
{{- if $secret }}
- name: rwfix-secret-{{ $i }}
  secret:
    secretName: {{ $secret }}
    items:
      - key: {{ $key }}
        path: {{ $key }}
{{- end }}
{{- end }}
{{- end -}}


{{/*
rwfix.validate fails on values the chart cannot run with. values.schema.json
says the same first; these guards hold where the schema is skipped
(--skip-schema-validation) and check what a schema cannot.
*/}}
{{- define "rwfix.validate" -}}
{{- $modes := list "deployment" "sidecar" "operator" "sharded" -}}
{{- if not (has .Values.mode $modes) -}}
{{- fail (printf "mode %q is not one of %s" (toString .Values.mode) (join ", " $modes)) -}}
{{- end -}}
{{- $policies := list "" "merge" "keep_distinct" -}}
{{- if not (has (toString .Values.config.collision.policy) $policies) -}}
{{- fail (printf "config.collision.policy %q is not one of merge, keep_distinct (or empty: by mode)" (toString .Values.config.collision.policy)) -}}
{{- end -}}
{{- if not .Values.upstreams -}}
{{- fail "upstreams: at least one upstream (name and url) is required: where rwfix forwards" -}}
{{- end -}}
{{- range $i, $u := .Values.upstreams -}}
{{- if not $u.name -}}{{- fail (printf "upstreams[%d].name is required" $i) -}}{{- end -}}
{{- if not (regexMatch "^https?://[^\\s/]+" (toString $u.url)) -}}
{{- fail (printf "upstreams[%d].url %q is not an http(s) URL: where rwfix forwards, e.g. http://mimir-distributor.mimir.svc:8080/api/v1/push" $i (toString $u.url)) -}}
{{- end -}}
{{- end -}}
{{- if eq .Values.mode "sharded" -}}
{{- if lt (int .Values.sharded.replicas) 1 -}}
{{- fail (printf "sharded.replicas is %v: at least one rwfix replica is needed" .Values.sharded.replicas) -}}
{{- end -}}
{{- if eq (include "rwfix.policy" .) "keep_distinct" -}}
{{- fail "mode sharded shards for the merge: config.collision.policy keep_distinct needs no sharding (use mode deployment)" -}}
{{- end -}}
{{- range .Values.sharded.vmagent.extraArgs -}}
{{- if regexMatch "^-+remoteWrite\\.(queues|inmemoryQueues|disableOnDiskQueue|shardByURLReplicas|shardByURL\\.labels)(=|$)" (toString .) -}}
{{- fail (printf "sharded.vmagent.extraArgs: %s breaks the merge behind vmagent (docs/scaling.md); the chart sets what it needs" (toString .)) -}}
{{- end -}}
{{- end -}}
{{- $_ := include "rwfix.ignoreLabels" . -}}
{{- end -}}
{{- end -}}

{{/*
rwfix.ignoreLabels: the labels vmagent must ignore when it shards (a JSON
list): those the presets rewrite, each replace-like rule's target_label, and
sharded.ignoreLabels. A rule that changes label names by regex fails unless
sharded.ignoreLabels names what it can change.
*/}}
{{- define "rwfix.ignoreLabels" -}}
{{- $out := list -}}
{{- $presets := .Values.config.presets -}}
{{- if kindIs "invalid" $presets }}{{ $presets = list "litellm" }}{{ end -}}{{/* absent: rwfix's default */}}
{{- if has "litellm" $presets -}}
{{- $out = concat $out (list "status_code" "exception_status") -}}
{{- end -}}
{{- range $i, $r := .Values.config.relabel_configs -}}
{{- $action := lower (toString ($r.action | default "replace")) -}}
{{- if has $action (list "replace" "lowercase" "uppercase" "hashmod") -}}
{{- $target := toString $r.target_label -}}
{{- if or (not $target) (contains "$" $target) -}}
{{- if not $.Values.sharded.ignoreLabels -}}
{{- fail (printf "mode sharded: relabel_configs[%d] has a templated or empty target_label %q; list the labels it can write in sharded.ignoreLabels" $i $target) -}}
{{- end -}}
{{- else -}}
{{- $out = append $out $target -}}
{{- end -}}
{{- else if has $action (list "labelmap" "labeldrop" "labelkeep") -}}
{{- if not $.Values.sharded.ignoreLabels -}}
{{- fail (printf "mode sharded: relabel_configs[%d] (%s) changes label names by regex; list the labels it can change in sharded.ignoreLabels" $i $action) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range .Values.sharded.ignoreLabels -}}{{- $out = append $out (toString .) -}}{{- end -}}
{{- $out | uniq | toJson -}}
{{- end -}}

{{/* The service account rwfix's pods run as ("" = the namespace's default). */}}
{{- define "rwfix.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}{{ .Values.serviceAccount.name | default (include "rwfix.fullname" .) }}{{- else -}}{{ .Values.serviceAccount.name }}{{- end -}}
{{- end -}}

{{/* Pod annotations: the configuration's checksum and podAnnotations. */}}
{{- define "rwfix.podAnnotations" -}}
checksum/config: {{ include "rwfix.config" . | sha256sum }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Scheduling, image pull secrets and service account of a pod spec. */}}
{{- define "rwfix.podScheduling" -}}
{{- with include "rwfix.serviceAccountName" . }}
serviceAccountName: {{ . }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The vmagent pods of mode sharded: not matched by rwfix's selector. */}}
{{- define "rwfix.vmagentSelectorLabels" -}}
app.kubernetes.io/name: vmagent
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rwfix.vmagentLabels" -}}
{{ include "rwfix.vmagentSelectorLabels" . }}
app.kubernetes.io/component: vmagent
app.kubernetes.io/part-of: rwfix
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
