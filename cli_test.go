package main

// The command line as a newcomer meets it (issue 19, "defects found in the
// first hour"): help and version on stdout with every serve flag in the
// top-level help, a start that fails says so, --capture.dir created at start.

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rwfix/rwfix/remotewrite/rwtest"
)

// runRwfix runs the binary to its end (killed after 20 s: a test that
// expects an exit fails instead of waiting) and returns stdout, stderr and
// the exit code.
func runRwfix(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, rwfixBin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Errorf("rwfix %v still running after 20 s; killed", args)
	}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func TestHelpAndVersionOnStdout(t *testing.T) {
	out, errOut, code := runRwfix(t, "--help")
	if code != 0 || errOut != "" {
		t.Errorf("--help: exit %d, stderr %q; want 0 and nothing on stderr", code, errOut)
	}
	// Every serve flag is in the top-level help (serve is what rwfix alone
	// runs), beside the log flags and the commands.
	for _, want := range []string{"--upstream.url", "--config.file", "--storage.path", "--capture.dir", "dry-run",
		"--web.listen-address", "--web.config.file", "--auto-gomemlimit", "--log.level", "test rules", "replay", "check config"} {
		if !strings.Contains(out, want) {
			t.Errorf("rwfix --help does not show %s:\n%s", want, out)
		}
	}
	out, errOut, code = runRwfix(t, "serve", "--help")
	if code != 0 || errOut != "" || !strings.Contains(out, "--upstream.url") {
		t.Errorf("serve --help: exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}
	out, errOut, code = runRwfix(t, "--version")
	if code != 0 || errOut != "" || !strings.HasPrefix(out, "rwfix, version ") {
		t.Errorf("--version: exit %d, stdout %q, stderr %q; want the version on stdout", code, out, errOut)
	}
	// A mistake still goes to stderr, with a non-zero exit.
	out, errOut, code = runRwfix(t, "--no-such-flag")
	if code == 0 || out != "" || !strings.Contains(errOut, "no-such-flag") {
		t.Errorf("--no-such-flag: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestStartWithBadConfigSaysItFailed: at start there is no running
// configuration to keep; the log must not say it keeps one.
func TestStartWithBadConfigSaysItFailed(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "rwfix.yml")
	writeFile(t, cfg, "presets: [nope]\n")
	_, errOut, code := runRwfix(t, "--config.file="+cfg, "--upstream.url=http://127.0.0.1:1/api/v1/write",
		"--web.listen-address=127.0.0.1:0", "--storage.path="+filepath.Join(t.TempDir(), "data"))
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if strings.Contains(errOut, "keeping") || !strings.Contains(errOut, "rwfix cannot start") || !strings.Contains(errOut, "nope") {
		t.Errorf("the log at a failed start:\n%s", errOut)
	}
}

// TestCaptureDirCreatedAtStart: a missing --capture.dir is created at
// start (as Prometheus creates its data directory); one that cannot be
// created stops the start with a clear error.
func TestCaptureDirCreatedAtStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rw", "capture")
	up := rwtest.NewRecordingUpstream(t)
	base, p := startRwfix(t, "--upstream.url="+up.URL, "--capture.dir="+dir)
	if _, code := postFixture(t, base, "testdata/fixtures/prometheus-2.42-rw1-01.rw1"); code/100 != 2 {
		t.Fatalf("rwfix answered %d", code)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.rw1"))
	if len(files) != 1 {
		t.Errorf("captured %v, want one .rw1 file in %s", files, dir)
	}
	if strings.Contains(p.logText(), "capture failed") {
		t.Errorf("capture failed:\n%s", p.logText())
	}

	file := filepath.Join(t.TempDir(), "a-file")
	writeFile(t, file, "")
	_, errOut, code := runRwfix(t, "--upstream.url="+up.URL, "--capture.dir="+filepath.Join(file, "sub"),
		"--web.listen-address=127.0.0.1:0", "--storage.path="+filepath.Join(t.TempDir(), "data"))
	if code != 1 || !strings.Contains(errOut, "--capture.dir") {
		t.Errorf("an impossible --capture.dir: exit %d, log:\n%s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(file, "sub")); err == nil {
		t.Error("created a directory inside a file?")
	}
}

// TestTestRulesGlob: `rwfix test rules testdata/rules/*.yml` runs every test
// file, skipping (with a note) the configuration that the glob also
// matches; a broken test file is reported and the next files still run.
// No error names a Go type.
func TestTestRulesGlob(t *testing.T) {
	files, _ := filepath.Glob("testdata/rules/*.yml")
	out, errOut, code := runRwfix(t, append([]string{"test", "rules"}, files...)...)
	if code != 0 || !strings.Contains(out, "SKIPPED: not a rule test file") || strings.Count(out, "Unit Testing: ") != len(files) ||
		!strings.Contains(out, "SUCCESS: other codes, other labels and other metrics are untouched") {
		t.Errorf("exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}

	broken := filepath.Join(t.TempDir(), "broken_test.yml")
	writeFile(t, broken, "tests:\n  - name: x\n    input_seris: []\n")
	out, errOut, code = runRwfix(t, "test", "rules", broken, "testdata/rules/litellm_test.yml")
	if code != 1 || !strings.Contains(out, `FAILED: line 3: unknown field "input_seris"`) ||
		!strings.Contains(out, "SUCCESS: a failure without HTTP code is counted as a 500") {
		t.Errorf("a broken file first: exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}

	var all strings.Builder
	all.WriteString(out + errOut)
	cfg := filepath.Join(t.TempDir(), "rwfix.yml")
	for content, want := range map[string]string{
		"presets: [litellm]\nbogus: 1\n": `line 2: unknown field "bogus"`,
		"collision:\n  policy: [x]\n":    "line 2: a list where a string belongs",
		"collision: 3\n":                 "line 1: a number (3) where a mapping belongs",
	} {
		writeFile(t, cfg, content)
		_, errOut, code := runRwfix(t, "check", "config", cfg)
		if code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("check config of %q: exit %d, %q; want %q", content, code, errOut, want)
		}
		all.WriteString(errOut)
	}
	for _, goName := range []string{"main.plain", "offline.", "relabel.", " in type "} {
		if strings.Contains(all.String(), goName) {
			t.Errorf("a Go type name (%s) in:\n%s", goName, all.String())
		}
	}
}
