package main

// The offline sub-commands, run as a user runs them: the rwfix binary.

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/rwfix/rwfix/remotewrite/rwtest"
)

func TestTestRulesCommand(t *testing.T) {
	files, _ := filepath.Glob("testdata/rules/*_test.yml")
	if len(files) < 2 {
		t.Fatalf("want the shipped rule tests in testdata/rules, found %v", files)
	}
	out, err := exec.Command(rwfixBin, append([]string{"test", "rules"}, files...)...).CombinedOutput()
	if err != nil || strings.Contains(string(out), "FAILED") || strings.Count(string(out), "SUCCESS") < 8 {
		t.Fatalf("shipped rule tests: %v\n%s", err, out)
	}
	bad := filepath.Join(t.TempDir(), "bad_test.yml")
	writeFile(t, bad, `tests:
  - name: wrong expectation
    input_series:
      - series: 'litellm_proxy_total_requests_metric_total{status_code="None"}'
        values: '1 2'
    expected_series:
      - series: 'litellm_proxy_total_requests_metric_total{status_code="None"}'
        values: '1 2'
`)
	out, err = exec.Command(rwfixBin, "test", "rules", bad).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("a failing test must exit 1, got %v\n%s", err, out)
	}
	for _, want := range []string{"FAILED: wrong expectation", `missing: {__name__="litellm_proxy_total_requests_metric_total", status_code="None"} 1 2`, `unexpected: {__name__="litellm_proxy_total_requests_metric_total", status_code="500"} 1 2`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestReplayCommand(t *testing.T) {
	out, err := exec.Command(rwfixBin, "replay", "testdata/fixtures").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	last := strings.TrimSpace(string(out))
	last = last[strings.LastIndexByte(last, '\n')+1:]
	if !strings.HasPrefix(last, "total: ") || strings.Contains(last, " 0 with new labels") {
		t.Errorf("summary %q: want a total with repaired series", last)
	}
	// Samples the merge holds (while an output learns its sources, or waits
	// for them) are counted as held, not as merged away or dropped; every
	// line adds up.
	line := regexp.MustCompile(`(\d+) series in, (\d+) out: \d+ with new labels, (\d+) merged into another series, (\d+) held by the merge \(sent later, merged\), (\d+) dropped by a rule, (\d+) held merged series sent$`)
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("line %q: want in, out, with new labels, merged, held, dropped, sent", l)
			continue
		}
		n := make([]int, 6)
		for i := range n {
			n[i], _ = strconv.Atoi(m[i+1])
		}
		if in, out, merged, held, dropped, sent := n[0], n[1], n[2], n[3], n[4], n[5]; in-merged-held-dropped+sent != out {
			t.Errorf("line %q does not add up", l)
		}
	}
	if m := line.FindStringSubmatch(last); m == nil || m[4] == "0" || m[5] != "0" {
		t.Errorf("summary %q: want held series, and none dropped (the defaults drop nothing)", last)
	}
	out, err = exec.Command(rwfixBin, "replay", "--full", "testdata/fixtures/prometheus-2.42-rw1-02.rw1").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- before") || !strings.Contains(string(out), `status_code="None"`) {
		t.Errorf("--full: %v\n%s", err, out)
	}
}

func TestCaptureThenReplay(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t)
	dir := t.TempDir()
	base, _ := startRwfix(t, "--upstream.url="+up.URL, "--capture.dir="+dir, "--capture.max-requests=3")
	files, _ := filepath.Glob("testdata/fixtures/*.rw1")
	for _, f := range files {
		postFixture(t, base, f)
	}
	got, _ := filepath.Glob(filepath.Join(dir, "*.rw1"))
	if len(got) != 3 {
		t.Fatalf("captured %d files, want 3 (--capture.max-requests)", len(got))
	}
	// A capture is byte for byte what was sent, and replays.
	orig, _ := os.ReadFile(files[0])
	first, _ := os.ReadFile(filepath.Join(dir, "000001.rw1"))
	if !bytes.Equal(orig, first) {
		t.Error("the capture differs from the request body")
	}
	out, err := exec.Command(rwfixBin, "replay", dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "total: ") {
		t.Errorf("replaying the capture: %v\n%s", err, out)
	}
}

func TestDryRunFlag(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t)
	base, _ := startRwfix(t, "--upstream.url="+up.URL, "--dry-run", "--config.file=testdata/config/replay.yml")
	body, _ := postFixture(t, base, "testdata/fixtures/prometheus-2.42-rw1-02.rw1")
	got := up.Bodies()
	if len(got) != 1 || !bytes.Equal(got[0], body) {
		t.Fatal("--dry-run must forward the request byte for byte")
	}
	if n := metricValue(t, base, "rwfix_dry_run_series_total"); n == 0 {
		t.Error("--dry-run counted nothing the rules would change")
	}
}
