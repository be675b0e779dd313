package main

// The deploy kit, validated: alert rules with promtool, the dashboard's
// queries against a running rwfix's metrics, the Kubernetes manifests decoded
// strictly into their API types, the systemd unit with systemd-analyze, the
// container build step, the compose example.

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/prometheus/promql/parser"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"

	"github.com/rwfix/rwfix/remotewrite/rwtest"
)

func TestDeployAlertRules(t *testing.T) {
	promtool := needBinary(t, "promtool (Debian's prometheus package)", os.Getenv("RWFIX_PROMTOOL"), "/usr/bin/promtool")
	for _, args := range [][]string{
		{"check", "rules", "deploy/prometheus/rwfix-alerts.yml"},
		{"test", "rules", "deploy/prometheus/rwfix-alerts_test.yml"},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "SUCCESS") {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}

var metricNameRe = regexp.MustCompile(`\brwfix_[a-z0-9_]+`)

// liveMetricNames runs rwfix, sends it the captured fixtures and one corrupt
// request, and returns the metric names its /metrics page shows.
func liveMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	up := rwtest.NewRecordingUpstream(t)
	base, _ := startRwfix(t, "--upstream.url="+up.URL)
	files, _ := filepath.Glob("testdata/fixtures/*.rw[12]")
	for _, f := range append(files, "") { // "": a corrupt body
		postFixture(t, base, f)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	names := map[string]bool{}
	for _, n := range metricNameRe.FindAllString(b.String(), -1) {
		names[n] = true
	}
	return names
}

func TestDeployDashboardAndAlertsUseRealMetrics(t *testing.T) {
	live := liveMetricNames(t)
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	data, err := os.ReadFile("deploy/grafana/rwfix-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	if len(dash.Panels) < 6 {
		t.Fatalf("%d panels", len(dash.Panels))
	}
	vars := strings.NewReplacer("$__rate_interval", "5m", "$job", ".*", "$instance", ".*")
	p := parser.NewParser(parser.Options{})
	var exprs []string
	for _, pn := range dash.Panels {
		for _, tg := range pn.Targets {
			if _, err := p.ParseExpr(vars.Replace(tg.Expr)); err != nil {
				t.Errorf("panel %q: %q does not parse: %v", pn.Title, tg.Expr, err)
			}
			exprs = append(exprs, tg.Expr)
		}
	}
	alerts, _ := os.ReadFile("deploy/prometheus/rwfix-alerts.yml")
	exprs = append(exprs, string(alerts))
	for _, e := range exprs {
		for _, n := range metricNameRe.FindAllString(e, -1) {
			base := strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_count")
			if !live[n] && !live[base] {
				t.Errorf("%s is used by the dashboard or alerts but rwfix does not expose it", n)
			}
		}
	}
}

func TestDeployKubernetesManifests(t *testing.T) {
	files, _ := filepath.Glob("deploy/kubernetes/*.yaml")
	kinds := map[string]int{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range strings.Split(string(data), "\n---\n") {
			kind, obj := decodeManifest(t, fmt.Sprintf("%s[%d]", f, i), doc)
			if obj == nil {
				continue
			}
			kinds[kind]++
			if cm, ok := obj.(*corev1.ConfigMap); ok {
				path := filepath.Join(t.TempDir(), "rwfix.yml")
				writeFile(t, path, cm.Data["rwfix.yml"])
				if _, err := loadConfig(path, nil, 0); err != nil {
					t.Errorf("%s: ConfigMap %s: rwfix.yml is invalid: %v", f, cm.Name, err)
				}
			}
			if p, ok := obj.(*monitoringv1.Prometheus); ok {
				if len(p.Spec.RemoteWrite) != 1 || p.Spec.RemoteWrite[0].URL != "http://localhost:9201/api/v1/write" || len(p.Spec.Containers) != 1 {
					t.Errorf("%s: the Operator form must remote-write to the rwfix container on localhost", f)
				}
				checkDataDir(t, f, p.Spec.Containers, p.Spec.Volumes)
			}
			switch o := obj.(type) {
			case *appsv1.Deployment:
				checkDataDir(t, f, o.Spec.Template.Spec.Containers, o.Spec.Template.Spec.Volumes)
			case *appsv1.StatefulSet:
				checkDataDir(t, f, o.Spec.Template.Spec.Containers, o.Spec.Template.Spec.Volumes)
			}
		}
	}
	for _, k := range []string{"ConfigMap", "Service", "Deployment", "StatefulSet", "Prometheus"} {
		if kinds[k] == 0 {
			t.Errorf("no %s among the manifests", k)
		}
	}
}

// decodeManifest decodes one Kubernetes manifest strictly (an unknown or
// misspelt field fails) into its API type, by kind. A kind rwfix's manifests
// do not use fails the test; nil: the document is empty or did not decode.
func decodeManifest(t *testing.T, where, doc string) (string, any) {
	t.Helper()
	if strings.TrimSpace(strings.TrimPrefix(doc, "---")) == "" {
		return "", nil
	}
	var meta struct {
		Kind string `json:"kind"`
	}
	if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	var obj any
	switch meta.Kind {
	case "ConfigMap":
		obj = &corev1.ConfigMap{}
	case "Service":
		obj = &corev1.Service{}
	case "ServiceAccount":
		obj = &corev1.ServiceAccount{}
	case "PodDisruptionBudget":
		obj = &policyv1.PodDisruptionBudget{}
	case "PersistentVolumeClaim":
		obj = &corev1.PersistentVolumeClaim{}
	case "Deployment":
		obj = &appsv1.Deployment{}
	case "StatefulSet":
		obj = &appsv1.StatefulSet{}
	case "Prometheus":
		obj = &monitoringv1.Prometheus{}
	case "ServiceMonitor":
		obj = &monitoringv1.ServiceMonitor{}
	case "PrometheusRule":
		obj = &monitoringv1.PrometheusRule{}
	default:
		t.Fatalf("%s: unexpected kind %q", where, meta.Kind)
	}
	if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
		t.Errorf("%s %s: %v", where, meta.Kind, err)
		return meta.Kind, nil
	}
	return meta.Kind, obj
}

// checkDataDir: the rwfix container has a data directory (--storage.path) on
// a writable volume mounted there (its root file system is read-only).
func checkDataDir(t *testing.T, file string, containers []corev1.Container, volumes []corev1.Volume) {
	t.Helper()
	for _, c := range containers {
		if c.Name != "rwfix" {
			continue
		}
		dir := ""
		for _, a := range c.Args {
			if v, ok := strings.CutPrefix(a, "--storage.path="); ok {
				dir = strings.TrimSpace(strings.SplitN(v, "#", 2)[0])
			}
		}
		if dir == "" {
			t.Errorf("%s: the rwfix container sets no --storage.path", file)
			return
		}
		for _, m := range c.VolumeMounts {
			if m.MountPath == dir && !m.ReadOnly && slices.ContainsFunc(volumes, func(v corev1.Volume) bool { return v.Name == m.Name }) {
				return
			}
		}
		t.Errorf("%s: no writable volume mounted at the data directory %s", file, dir)
		return
	}
	t.Errorf("%s: no rwfix container", file)
}

func TestDeploySystemdUnit(t *testing.T) {
	analyze := needBinary(t, "systemd-analyze (Debian's systemd package)", "systemd-analyze")
	unit, err := os.ReadFile("deploy/systemd/rwfix.service")
	if err != nil {
		t.Fatal(err)
	}
	// Verify against the binary just built (verify checks ExecStart exists).
	path := filepath.Join(t.TempDir(), "rwfix.service")
	writeFile(t, path, strings.ReplaceAll(string(unit), "/usr/local/bin/rwfix", rwfixBin))
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, want := range []string{"NoNewPrivileges=yes", "ProtectSystem=strict", "DynamicUser=yes", "ExecReload=/bin/kill -HUP $MAINPID"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %s", want)
		}
	}
}

func TestDeployContainerAndCompose(t *testing.T) {
	df, err := os.ReadFile("deploy/container/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	// Run the Dockerfile's own build step and check the binary is static.
	var build string
	for _, line := range strings.Split(string(df), "\n") {
		if strings.HasPrefix(line, "RUN ") && strings.Contains(line, "go build") {
			build = strings.TrimPrefix(line, "RUN ")
		}
	}
	if build == "" || !strings.Contains(string(df), "USER 65534:65534") {
		t.Fatal("the Dockerfile must build with go build and run as non-root (65534)")
	}
	out := filepath.Join(t.TempDir(), "out")
	cmd := exec.Command("sh", "-c", strings.ReplaceAll(build, "/out/rwfix", out+"/rwfix"))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", build, err, b)
	}
	f, err := elf.Open(filepath.Join(out, "rwfix"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the container binary is dynamically linked")
		}
	}
	var compose struct {
		Services map[string]struct {
			Command []string `json:"command"`
		} `json:"services"`
	}
	data, _ := os.ReadFile("deploy/compose/docker-compose.yml")
	if err := yaml.Unmarshal(data, &compose); err != nil {
		t.Fatal(err)
	}
	rw, ok := compose.Services["rwfix"]
	if !ok || !strings.Contains(strings.Join(rw.Command, " "), "--upstream.url=http://receiver:9090/api/v1/write") {
		t.Errorf("compose: rwfix must forward to the receiver service: %+v", compose.Services)
	}
	prom, _ := os.ReadFile("deploy/compose/prometheus.yml")
	if !strings.Contains(string(prom), "url: http://rwfix:9201/api/v1/write") {
		t.Error("compose: Prometheus must remote-write to rwfix")
	}
}

// TestDeployContainerImage builds the image for real, without Docker or a
// registry (deploy/container/build.sh: buildah, the Dockerfile's final stage
// on scratch), checks its configuration against the Dockerfile's final stage,
// and runs rwfix --version inside it (chroot isolation: this machine's
// cgroups refuse an OCI runtime).
func TestDeployContainerImage(t *testing.T) {
	buildah := needBinary(t, "buildah (Debian's buildah package, see .ci/install)", "buildah")
	b := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(buildah, append([]string{"--storage-driver", "vfs"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("buildah %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	tag := fmt.Sprintf("localhost/rwfix:test-%d", os.Getpid())
	if out, err := exec.Command("bash", "deploy/container/build.sh", tag).CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(buildah, "--storage-driver", "vfs", "rmi", tag).Run() })
	var img struct {
		OCIv1 struct {
			Config struct {
				User         string
				Entrypoint   []string
				Cmd          []string
				ExposedPorts map[string]struct{}
				Volumes      map[string]struct{}
			} `json:"config"`
		}
	}
	if err := json.Unmarshal([]byte(b("inspect", "--type", "image", tag)), &img); err != nil {
		t.Fatal(err)
	}
	cfg := img.OCIv1.Config
	// The Dockerfile's final stage says the same.
	df, err := os.ReadFile("deploy/container/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	final := string(df[strings.LastIndex(string(df), "\nFROM "):])
	for _, want := range []string{
		"FROM scratch", "USER " + cfg.User, "EXPOSE 9201", "VOLUME /var/lib/rwfix",
		`ENTRYPOINT ["` + strings.Join(cfg.Entrypoint, `", "`) + `"]`,
		`CMD ["` + strings.Join(cfg.Cmd, `", "`) + `"]`,
	} {
		if !strings.Contains(final, want) {
			t.Errorf("the image has %q, the Dockerfile's final stage does not:\n%s", want, final)
		}
	}
	if cfg.User != "65534:65534" || len(cfg.ExposedPorts) != 1 || len(cfg.Volumes) != 1 {
		t.Errorf("image config %+v", cfg)
	}
	ctr := b("from", tag)
	t.Cleanup(func() { _ = exec.Command(buildah, "--storage-driver", "vfs", "rm", ctr).Run() })
	out := b("run", "--isolation", "chroot", ctr, "/usr/local/bin/rwfix", "--version")
	if !strings.Contains(out, "rwfix, version ") || strings.Contains(out, "revision: unknown") {
		t.Errorf("rwfix --version in the image:\n%s", out)
	}
	t.Logf("image %s: user %s, entrypoint %v, cmd %v\n%s", tag, cfg.User, cfg.Entrypoint, cfg.Cmd, out)
}
