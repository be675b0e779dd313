package main

// The Helm chart (deploy/helm/rwfix), validated like the plain manifests:
// helm lint, then helm template of the default values and of each mode
// (deploy/helm/rwfix/ci/*.yaml), every rendered object strictly decoded into
// its Kubernetes or Prometheus Operator type, the rendered rwfix.yml loaded
// as rwfix loads it, and the rwfix container checked (data directory on a
// writable volume, probes, non-root, read-only root).

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
)

const chartDir = "deploy/helm/rwfix"

func helmBin(t *testing.T) string {
	return needBinary(t, "helm v3.22.0 (go install helm.sh/helm/v3/cmd/helm@v3.22.0, see .ci/install)",
		toolPath("helm-v3.22.0/helm"), "helm")
}

func TestDeployHelmChart(t *testing.T) {
	helm := helmBin(t)
	valueFiles, _ := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if len(valueFiles) < 4 {
		t.Fatalf("want a values file per mode in %s/ci, have %v", chartDir, valueFiles)
	}
	// The chart carries copies of the dashboard and the alert rules; they
	// must be the checked ones.
	for copyPath, orig := range map[string]string{
		"files/rwfix-dashboard.json": "deploy/grafana/rwfix-dashboard.json",
		"files/rwfix-alerts.yml":     "deploy/prometheus/rwfix-alerts.yml",
	} {
		a, _ := os.ReadFile(filepath.Join(chartDir, copyPath))
		b, _ := os.ReadFile(orig)
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s/%s differs from %s: copy it again", chartDir, copyPath, orig)
		}
	}
	modes := map[string]bool{}
	for _, vf := range append([]string{""}, valueFiles...) {
		name := "default values"
		args := []string{"template", "test-rwfix", chartDir}
		lint := []string{"lint", "--strict", chartDir}
		if vf != "" {
			name = filepath.Base(vf)
			args = append(args, "--values", vf)
			lint = append(lint, "--values", vf)
		}
		t.Run(name, func(t *testing.T) {
			if out, err := exec.Command(helm, lint...).CombinedOutput(); err != nil {
				t.Fatalf("helm lint: %v\n%s", err, out)
			}
			out, err := exec.Command(helm, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, out)
			}
			kinds := map[string]int{}
			policy := ""
			rwfixDeployment := false
			for _, doc := range strings.Split(string(out), "\n---\n") {
				kind, obj := decodeManifest(t, name, doc)
				if obj == nil {
					continue
				}
				kinds[kind]++
				switch o := obj.(type) {
				case *corev1.ConfigMap:
					if cfg, ok := o.Data["rwfix.yml"]; ok {
						path := filepath.Join(t.TempDir(), "rwfix.yml")
						writeFile(t, path, cfg)
						c, err := loadConfig(path, nil, 0)
						if err != nil {
							t.Fatalf("rendered rwfix.yml is invalid: %v\n%s", err, cfg)
						}
						policy = string(c.Repair.Collision.Policy)
						for _, u := range c.Upstreams {
							if u.HTTPClientConfig.BasicAuth != nil && u.HTTPClientConfig.BasicAuth.PasswordFile == "" {
								t.Errorf("upstream %s: a password outside a Secret", u.Name)
							}
						}
					}
				case *appsv1.Deployment:
					if o.Spec.Template.Spec.Containers[0].Name == "vmagent" {
						checkVmagentPod(t, o)
						break
					}
					modes["deployment"] = true
					rwfixDeployment = true
					checkRwfixPod(t, "Deployment", o.Spec.Template.Spec)
				case *appsv1.StatefulSet:
					mode := "sharded"
					if slices.ContainsFunc(o.Spec.Template.Spec.Containers, func(c corev1.Container) bool { return c.Name == "prometheus" }) {
						mode = "sidecar"
					}
					modes[mode] = true
					spec := o.Spec.Template.Spec
					for _, c := range o.Spec.VolumeClaimTemplates {
						spec.Volumes = append(spec.Volumes, corev1.Volume{Name: c.Name})
					}
					checkRwfixPod(t, "StatefulSet", spec)
				case *monitoringv1.Prometheus:
					modes["operator"] = true
					if len(o.Spec.RemoteWrite) != 1 || o.Spec.RemoteWrite[0].URL != "http://localhost:9201/api/v1/write" {
						t.Errorf("the Prometheus resource must remote-write to rwfix on localhost: %+v", o.Spec.RemoteWrite)
					}
					checkDataDir(t, "Prometheus", o.Spec.Containers, o.Spec.Volumes)
				case *monitoringv1.PrometheusRule:
					if len(o.Spec.Groups) == 0 || len(o.Spec.Groups[0].Rules) == 0 {
						t.Error("PrometheusRule without rules")
					}
				}
			}
			if kinds["ConfigMap"] == 0 || policy == "" {
				t.Fatalf("no rwfix configuration rendered (%v)", kinds)
			}
			// The collision policy by mode (values.yaml says why).
			if rwfixDeployment && vf == "" && policy != "keep_distinct" {
				t.Errorf("deployment mode defaults to %s, want keep_distinct", policy)
			}
			if !rwfixDeployment && policy != "merge" {
				t.Errorf("sidecar, operator and sharded modes default to %s, want merge", policy)
			}
			t.Logf("%v, collision policy %s", kinds, policy)
		})
	}
	for _, m := range []string{"deployment", "sidecar", "operator", "sharded"} {
		if !modes[m] {
			t.Errorf("mode %s never rendered", m)
		}
	}
}

// checkRwfixPod checks the rwfix container of a pod: its data directory on a
// writable volume, probes on /-/healthy and /-/ready, non-root and a
// read-only root file system.
func checkRwfixPod(t *testing.T, kind string, spec corev1.PodSpec) {
	t.Helper()
	checkDataDir(t, kind, spec.Containers, spec.Volumes)
	if spec.SecurityContext == nil || spec.SecurityContext.RunAsNonRoot == nil || !*spec.SecurityContext.RunAsNonRoot {
		t.Errorf("%s: pod not run as non-root", kind)
	}
	for _, c := range spec.Containers {
		if c.Name != "rwfix" {
			continue
		}
		if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/-/ready" || c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/-/healthy" {
			t.Errorf("%s: rwfix probes must be /-/ready and /-/healthy", kind)
		}
		if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
			t.Errorf("%s: rwfix's root file system is not read-only", kind)
		}
	}
}

// helmTemplate renders the chart with args (values flags) in namespace
// monitoring and decodes every object.
func helmTemplate(t *testing.T, args ...string) []any {
	t.Helper()
	out, err := exec.Command(helmBin(t), append([]string{"template", "test", chartDir, "--namespace", "monitoring"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, out)
	}
	var objs []any
	for _, doc := range strings.Split(string(out), "\n---\n") {
		if _, obj := decodeManifest(t, fmt.Sprint(args), doc); obj != nil {
			objs = append(objs, obj)
		}
	}
	return objs
}

// checkVmagentPod checks the vmagent tier of mode sharded: one pod,
// replaced (never two at once), one queue per URL, the queue on a claim.
func checkVmagentPod(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("vmagent: want 1 replica, strategy Recreate; got %v, %s", d.Spec.Replicas, d.Spec.Strategy.Type)
	}
	spec := d.Spec.Template.Spec
	c := spec.Containers[0]
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"-remoteWrite.shardByURL ", "-remoteWrite.queues=1 "} {
		if !strings.Contains(args+" ", want) {
			t.Errorf("vmagent: no %q in %s", want, args)
		}
	}
	for _, bad := range []string{"inmemoryQueues", "disableOnDiskQueue", "shardByURLReplicas"} {
		if strings.Contains(args, bad) {
			t.Errorf("vmagent: %s set: %s", bad, args)
		}
	}
	dir := ""
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "-remoteWrite.tmpDataPath="); ok {
			dir = strings.TrimSpace(strings.SplitN(v, "#", 2)[0])
		}
	}
	onClaim := false
	for _, m := range c.VolumeMounts {
		for _, v := range spec.Volumes {
			if m.MountPath == dir && v.Name == m.Name && v.PersistentVolumeClaim != nil {
				onClaim = true
			}
		}
	}
	if !onClaim {
		t.Errorf("vmagent: its queue (-remoteWrite.tmpDataPath=%q) is not on a PersistentVolumeClaim", dir)
	}
	if spec.SecurityContext == nil || spec.SecurityContext.RunAsNonRoot == nil || !*spec.SecurityContext.RunAsNonRoot ||
		c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
		t.Error("vmagent: not non-root with a read-only root")
	}
}

func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}

// TestHelmChartSharded: mode sharded renders a vmagent tier whose flags
// shard by every label except the ones rwfix rewrites (the preset's and the
// user rules' target labels), one -remoteWrite.url per replica of an rwfix
// StatefulSet by the stable pod names of its headless Service, each replica
// with its own data volume; paused, the vmagent Service selects no pod.
func TestHelmChartSharded(t *testing.T) {
	var monitor *monitoringv1.ServiceMonitor
	render := func(args ...string) (sts *appsv1.StatefulSet, vm *appsv1.Deployment, svcs map[string]*corev1.Service) {
		svcs = map[string]*corev1.Service{}
		for _, o := range helmTemplate(t, append([]string{"--values", filepath.Join(chartDir, "ci", "sharded-values.yaml")}, args...)...) {
			switch o := o.(type) {
			case *monitoringv1.ServiceMonitor:
				monitor = o
			case *appsv1.StatefulSet:
				sts = o
			case *appsv1.Deployment:
				vm = o
			case *corev1.Service:
				svcs[o.Name] = o
			}
		}
		if sts == nil || vm == nil {
			t.Fatalf("mode sharded %v: want a StatefulSet and the vmagent Deployment", args)
		}
		return sts, vm, svcs
	}
	sts, vm, svcs := render()
	checkVmagentPod(t, vm)
	headless := svcs[sts.Spec.ServiceName]
	if headless == nil || headless.Spec.ClusterIP != corev1.ClusterIPNone || !selects(headless.Spec.Selector, sts.Spec.Template.Labels) {
		t.Fatalf("the StatefulSet's serviceName %q is not a headless Service selecting its pods: %+v", sts.Spec.ServiceName, headless)
	}
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 4 {
		t.Errorf("StatefulSet replicas %v, want sharded.replicas (4)", sts.Spec.Replicas)
	}
	// Each replica its own data volume: the data directory is a claim template.
	if !slices.ContainsFunc(sts.Spec.VolumeClaimTemplates, func(c corev1.PersistentVolumeClaim) bool { return c.Name == "rwfix-state" }) ||
		slices.ContainsFunc(sts.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == "rwfix-state" }) {
		t.Error("the rwfix data directory must come from volumeClaimTemplates, one per replica")
	}
	var urls []string
	ignore := ""
	for _, a := range vm.Spec.Template.Spec.Containers[0].Args {
		if v, ok := strings.CutPrefix(a, "-remoteWrite.url="); ok {
			urls = append(urls, v)
		}
		if v, ok := strings.CutPrefix(a, "-remoteWrite.shardByURL.ignoreLabels="); ok {
			ignore = v
		}
	}
	var want []string
	for i := range 4 {
		want = append(want, fmt.Sprintf("http://%s-%d.%s.monitoring.svc:9201/api/v1/write", sts.Name, i, sts.Spec.ServiceName))
	}
	if !slices.Equal(urls, want) {
		t.Errorf("vmagent's URLs:\n got %v\nwant %v (one per replica, by ordinal)", urls, want)
	}
	// The preset rewrites status_code and exception_status; the user rule of
	// ci/sharded-values.yaml writes error_code.
	if ignore != "status_code,exception_status,error_code" {
		t.Errorf("-remoteWrite.shardByURL.ignoreLabels=%q, want status_code,exception_status,error_code", ignore)
	}
	vmSvc := svcs[vm.Name]
	if vmSvc == nil || !selects(vmSvc.Spec.Selector, vm.Spec.Template.Labels) {
		t.Errorf("the vmagent Service %s does not select vmagent's pod", vm.Name)
	}
	if selects(sts.Spec.Selector.MatchLabels, vm.Spec.Template.Labels) || selects(vm.Spec.Selector.MatchLabels, sts.Spec.Template.Labels) {
		t.Error("the vmagent and rwfix selectors overlap")
	}
	// The ServiceMonitor scrapes the replicas through the headless Service
	// (and no other Service).
	if monitor == nil {
		t.Fatal("no ServiceMonitor in mode sharded with serviceMonitor.enabled")
	}
	for name, svc := range svcs {
		hasPort := slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == monitor.Spec.Endpoints[0].Port })
		if m := selects(monitor.Spec.Selector.MatchLabels, svc.Labels) && hasPort; m != (name == sts.Spec.ServiceName) {
			t.Errorf("the ServiceMonitor selects Service %s: %v", name, m)
		}
	}

	// Paused (a resize): the Service selects no pod; the URL list follows
	// sharded.replicas, the old URLs first.
	sts, vm, svcs = render("--set", "sharded.paused=true", "--set", "sharded.replicas=5")
	if s := svcs[vm.Name]; s == nil || selects(s.Spec.Selector, vm.Spec.Template.Labels) || selects(s.Spec.Selector, sts.Spec.Template.Labels) {
		t.Errorf("paused: the vmagent Service still selects a pod: %v", s)
	}
	n := 0
	for _, a := range vm.Spec.Template.Spec.Containers[0].Args {
		if strings.HasPrefix(a, "-remoteWrite.url=") {
			if n < 4 && a != "-remoteWrite.url="+want[n] {
				t.Errorf("resized: URL %d is %s, want %s (its queue on disk goes with it)", n, a, want[n])
			}
			n++
		}
	}
	if n != 5 || *sts.Spec.Replicas != 5 {
		t.Errorf("resized to 5: %d URLs, %d replicas", n, *sts.Spec.Replicas)
	}

	// Without the preset and rules nothing is rewritten: vmagent shards by
	// every label.
	_, vm, _ = render("--set-json", "config.presets=[]", "--set-json", "config.relabel_configs=[]")
	if args := strings.Join(vm.Spec.Template.Spec.Containers[0].Args, " "); strings.Contains(args, "ignoreLabels") {
		t.Errorf("nothing rewritten, yet %s", args)
	}
	// With the default configuration (the litellm preset), vmagent ignores
	// what TestE2EShardedVmagent runs it with.
	for _, o := range helmTemplate(t, "--set", "mode=sharded") {
		if d, ok := o.(*appsv1.Deployment); ok && !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "-remoteWrite.shardByURL.ignoreLabels="+shardedIgnoreLabels) {
			t.Errorf("default values: vmagent args %v, want -remoteWrite.shardByURL.ignoreLabels=%s", d.Spec.Template.Spec.Containers[0].Args, shardedIgnoreLabels)
		}
	}
	// A label named in sharded.ignoreLabels joins the derived ones.
	_, vm, _ = render("--set", "sharded.ignoreLabels={tenant_code}")
	if args := strings.Join(vm.Spec.Template.Spec.Containers[0].Args, " "); !strings.Contains(args, "-remoteWrite.shardByURL.ignoreLabels=status_code,exception_status,error_code,tenant_code") {
		t.Errorf("sharded.ignoreLabels not added: %s", args)
	}
}

// TestHelmChartRefusesWrongValues: a wrong mode, an empty upstream URL or a
// misspelt policy fail helm template with a message naming the value, by
// values.schema.json and, with the schema skipped, by the templates' guards;
// so do the sharded mode's own mistakes.
func TestHelmChartRefusesWrongValues(t *testing.T) {
	helm := helmBin(t)
	emptyURL := filepath.Join(t.TempDir(), "empty-url.yaml")
	writeFile(t, emptyURL, "upstreams:\n  - name: tsdb\n    url: \"\"\n")
	noUpstream := filepath.Join(t.TempDir(), "no-upstream.yaml")
	writeFile(t, noUpstream, "upstreams: []\n")
	labelmap := filepath.Join(t.TempDir(), "labelmap.yaml")
	writeFile(t, labelmap, "mode: sharded\nconfig:\n  relabel_configs:\n    - {action: labelmap, regex: 'old_(.*)', replacement: '$1'}\n")
	for _, tc := range []struct {
		name             string
		args             []string
		schema, template string // what the error says, with the schema and without
	}{
		{"mode sidcar", []string{"--set", "mode=sidcar"}, "'/mode': value must be one of 'deployment', 'sidecar', 'operator', 'sharded'", `mode "sidcar" is not one of deployment, sidecar, operator, sharded`},
		{"empty upstream URL", []string{"--values", emptyURL}, "'/upstreams/0/url': '' is not valid uri", `upstreams[0].url "" is not an http(s) URL`},
		{"no upstream", []string{"--values", noUpstream}, "'/upstreams': minItems: got 0, want 1", "upstreams: at least one upstream"},
		{"policy mrege", []string{"--set", "config.collision.policy=mrege"}, "'/config/collision/policy': value must be one of '', 'merge', 'keep_distinct'", `config.collision.policy "mrege" is not one of merge, keep_distinct`},
		{"sharded with more vmagent queues", []string{"--set", "mode=sharded", "--set", "sharded.vmagent.extraArgs={-remoteWrite.queues=4}"}, "", "sharded.vmagent.extraArgs: -remoteWrite.queues=4 breaks the merge"},
		{"sharded with keep_distinct", []string{"--set", "mode=sharded", "--set", "config.collision.policy=keep_distinct"}, "", "mode sharded shards for the merge"},
		{"sharded with a labelmap rule", []string{"--values", labelmap}, "", "relabel_configs[0] (labelmap) changes label names by regex; list the labels it can change in sharded.ignoreLabels"},
		{"sharded with zero replicas", []string{"--set", "mode=sharded", "--set", "sharded.replicas=0"}, "'/sharded/replicas': minimum: got 0, want 1", "sharded.replicas is 0: at least one rwfix replica is needed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, skip := range []bool{false, true} {
				want := tc.schema
				args := append([]string{"template", "test", chartDir}, tc.args...)
				if skip {
					want = tc.template
					args = append(args, "--skip-schema-validation")
				}
				if want == "" {
					want = tc.template + tc.schema
				}
				out, err := exec.Command(helm, args...).CombinedOutput()
				if err == nil {
					t.Errorf("helm %v rendered (schema skipped: %v); want it refused", tc.args, skip)
					continue
				}
				if !strings.Contains(string(out), want) {
					t.Errorf("helm %v (schema skipped: %v): the error does not say %q:\n%s", tc.args, skip, want, out)
				}
			}
		})
	}
	// The valid modes still render.
	for _, m := range []string{"deployment", "sidecar", "operator", "sharded"} {
		if out, err := exec.Command(helm, "template", "test", chartDir, "--set", "mode="+m).CombinedOutput(); err != nil {
			t.Errorf("mode %s: %v\n%s", m, err, out)
		}
	}
}

// prometheus3Module is the Prometheus the tests run (helpers_test.go:
// github.com/prometheus/prometheus v0.316.0 is Prometheus 3.16.0); the
// sidecar's image is that release.
const prometheus3Module = "v0.316.0"

// TestHelmChartPodOptions: the scheduling and pod values are rendered in
// every mode where set (and absent by default), the PodDisruptionBudget
// covers rwfix's pods, --web.enable-lifecycle is opt-in, and the sidecar's
// Prometheus is the release the tests run.
func TestHelmChartPodOptions(t *testing.T) {
	opts := filepath.Join(t.TempDir(), "options.yaml")
	writeFile(t, opts, `nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: monitoring, effect: NoSchedule}]
affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: tier, operator: In, values: [infra]}]}]}}}
podAnnotations: {example.com/team: observability}
serviceAccount: {create: true, annotations: {example.com/role: rwfix}}
imagePullSecrets: [{name: my-registry}]
podDisruptionBudget: {enabled: true, minAvailable: 1}
`)
	minor := strings.TrimPrefix(strings.Split(prometheus3Module, ".")[1], "3")
	wantImage := "quay.io/prometheus/prometheus:v3." + minor + ".0"
	check := func(mode, kind string, spec corev1.PodSpec, annotations map[string]string, set bool) {
		t.Helper()
		got := []bool{len(spec.NodeSelector) > 0, len(spec.Tolerations) > 0, spec.Affinity != nil,
			annotations["example.com/team"] == "observability", spec.ServiceAccountName == "test-rwfix", len(spec.ImagePullSecrets) > 0}
		for i, name := range []string{"nodeSelector", "tolerations", "affinity", "podAnnotations", "serviceAccount", "imagePullSecrets"} {
			if got[i] != set {
				t.Errorf("mode %s, %s: %s rendered = %v, want %v", mode, kind, name, got[i], set)
			}
		}
	}
	for _, mode := range []string{"deployment", "sidecar", "operator", "sharded"} {
		for _, set := range []bool{false, true} {
			args := []string{"--set", "mode=" + mode}
			if set {
				args = append(args, "--values", opts, "--set", "web.enableLifecycle=true")
			}
			pdb, sa := false, false
			var rwfixLabels map[string]string
			lifecycle := 0
			for _, o := range helmTemplate(t, args...) {
				var containers []corev1.Container
				switch o := o.(type) {
				case *appsv1.Deployment:
					check(mode, o.Name, o.Spec.Template.Spec, o.Spec.Template.Annotations, set)
					containers = o.Spec.Template.Spec.Containers
					if containers[0].Name == "rwfix" {
						rwfixLabels = o.Spec.Template.Labels
					}
				case *appsv1.StatefulSet:
					check(mode, o.Name, o.Spec.Template.Spec, o.Spec.Template.Annotations, set)
					containers = o.Spec.Template.Spec.Containers
					rwfixLabels = o.Spec.Template.Labels
				case *monitoringv1.Prometheus:
					s := o.Spec
					got := []bool{len(s.NodeSelector) > 0, len(s.Tolerations) > 0, s.Affinity != nil,
						s.PodMetadata != nil && s.PodMetadata.Annotations["example.com/team"] == "observability", len(s.ImagePullSecrets) > 0}
					for i, name := range []string{"nodeSelector", "tolerations", "affinity", "podAnnotations", "imagePullSecrets"} {
						if got[i] != set {
							t.Errorf("mode operator: %s rendered = %v, want %v", name, got[i], set)
						}
					}
					containers = s.Containers
				case *policyv1.PodDisruptionBudget:
					pdb = true
					if o.Spec.MinAvailable == nil || o.Spec.MinAvailable.IntValue() != 1 || o.Spec.MaxUnavailable != nil {
						t.Errorf("mode %s: PodDisruptionBudget %+v, want minAvailable 1", mode, o.Spec)
					}
					defer func(sel map[string]string) {
						if !selects(sel, rwfixLabels) {
							t.Errorf("mode %s: the PodDisruptionBudget selects %v, not rwfix's pods %v", mode, sel, rwfixLabels)
						}
					}(o.Spec.Selector.MatchLabels)
				case *corev1.ServiceAccount:
					sa = o.Name == "test-rwfix"
				}
				for _, c := range containers {
					if c.Name == "rwfix" && slices.Contains(c.Args, "--web.enable-lifecycle") {
						lifecycle++
					}
					if c.Name == "prometheus" && c.Image != wantImage {
						t.Errorf("the sidecar's Prometheus is %s, want %s (what the tests run)", c.Image, wantImage)
					}
				}
			}
			if wantPDB := set && mode != "operator"; pdb != wantPDB {
				t.Errorf("mode %s, options %v: PodDisruptionBudget rendered = %v, want %v", mode, set, pdb, wantPDB)
			}
			if sa != set {
				t.Errorf("mode %s, options %v: ServiceAccount rendered = %v", mode, set, sa)
			}
			if (lifecycle > 0) != set {
				t.Errorf("mode %s: --web.enable-lifecycle on %d rwfix containers with web.enableLifecycle=%v", mode, lifecycle, set)
			}
		}
	}
}
