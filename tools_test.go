package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestToolsWhereCIInstallPutsThem: the tests look for the tools that
// .ci/install builds where it put them ($RWFIX_TOOLS), and a demo run that
// finds none fails (deploy/demo/run.sh once printed SKIP, then PASS).
func TestToolsWhereCIInstallPutsThem(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "prometheus-v0.316.0", "prometheus")
	if err := os.MkdirAll(filepath.Dir(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fake, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RWFIX_TOOLS", dir)
	t.Setenv("RWFIX_PROMETHEUS3", "")
	if got := prometheus3(t); got != fake {
		t.Errorf("prometheus3 = %s, want %s (under RWFIX_TOOLS)", got, fake)
	}
	for _, rel := range []string{"vmagent-v1.151.0/vmagent", "helm-v3.22.0/helm"} {
		if got, want := toolPath(rel), filepath.Join(dir, rel); got != want {
			t.Errorf("toolPath(%q) = %s, want %s", rel, got, want)
		}
	}

	t.Setenv("CI", "")
	old := *demo
	defer func() { *demo = old }()
	*demo = false
	if missingBinaryFails() {
		t.Error("a developer's run without CI=true must skip, not fail, without a binary")
	}
	*demo = true
	if !missingBinaryFails() {
		t.Error("the demo must fail, not skip, without a binary")
	}
	*demo = false
	t.Setenv("CI", "true")
	if !missingBinaryFails() {
		t.Error("CI=true must fail, not skip, without a binary")
	}
}
