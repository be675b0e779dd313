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
    - --web.enable-lifecycle
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
