package main

// The Helm chart (deploy/helm/rwfix), validated like the plain manifests:
// helm lint, then helm template of the default values and of each mode
// (deploy/helm/rwfix/ci/*.yaml), every rendered object strictly decoded into
// its Kubernetes or Prometheus Operator type, the rendered rwfix.yml loaded
// as rwfix loads it, and the rwfix container checked (data directory on a
// writable volume, probes, non-root, read-only root).

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

const chartDir = "deploy/helm/rwfix"

func helmBin(t *testing.T) string {
	return needBinary(t, "helm v3.22.0 (go install helm.sh/helm/v3/cmd/helm@v3.22.0, see .ci/install)",
		toolPath("helm-v3.22.0/helm"), "helm")
}

func TestDeployHelmChart(t *testing.T) {
	helm := helmBin(t)
	valueFiles, _ := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if len(valueFiles) < 3 {
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
					modes["deployment"] = true
					checkRwfixPod(t, "Deployment", o.Spec.Template.Spec)
				case *appsv1.StatefulSet:
					modes["sidecar"] = true
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
			if kinds["Deployment"] > 0 && vf == "" && policy != "keep_distinct" {
				t.Errorf("deployment mode defaults to %s, want keep_distinct", policy)
			}
			if kinds["Deployment"] == 0 && policy != "merge" {
				t.Errorf("sidecar and operator modes default to %s, want merge", policy)
			}
			t.Logf("%v, collision policy %s", kinds, policy)
		})
	}
	for _, m := range []string{"deployment", "sidecar", "operator"} {
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
