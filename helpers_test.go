package main

// Helpers for the tests that drive real binaries: rwfix itself (built once in
// TestMain), Prometheus 2.42 (Debian's package, sends RW 1.0) and Prometheus
// 3.x (go install, sends RW 2.0 and is the receiver). Every process a test
// starts is stopped by t.Cleanup; every server listens on 127.0.0.1 only.

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/rwfix/rwfix/remotewrite/rwtest"
	"github.com/rwfix/rwfix/remotewrite/wire"
)

var rwfixBin string

func TestMain(m *testing.M) {
	if spec := os.Getenv("RWFIX_FWDPROXY"); spec != "" {
		fwdProxyMain(spec) // the load benchmark's baseline relay
		return
	}
	dir, err := os.MkdirTemp("", "rwfix-test-bin")
	if err != nil {
		panic(err)
	}
	rwfixBin = filepath.Join(dir, "rwfix")
	// A plain build: version and revision from git, even where GOFLAGS says
	// -buildvcs=false (as on this project's machines).
	out, err := exec.Command("go", "build", "-buildvcs=auto", "-o", rwfixBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building rwfix: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// needBinary finds a binary, or fails the test where a missing one must not
// pass unseen (missingBinaryFails), or skips it on a developer machine
// without it.
func needBinary(t *testing.T, what string, candidates ...string) string {
	t.Helper()
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("%s not found (tried %v); run .ci/install once to install it (RWFIX_TOOLS: where it puts the tools it builds)", what, candidates)
	if missingBinaryFails() {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// missingBinaryFails: under CI=true (.ci/run installed everything) and in
// the demo (deploy/demo/run.sh did), a binary not found is a failure, never
// a skip that passes.
func missingBinaryFails() bool { return os.Getenv("CI") == "true" || *demo }

// toolPath is where .ci/install builds a tool: under $RWFIX_TOOLS, else
// ~/.cache/rwfix-tools (as .ci/install chooses), e.g.
// toolPath("prometheus-v0.316.0/prometheus").
func toolPath(rel string) string {
	dir := os.Getenv("RWFIX_TOOLS")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "rwfix-tools")
	}
	return filepath.Join(dir, rel)
}

// prometheus2 is Debian's Prometheus 2.42: it sends RW 1.0.
func prometheus2(t *testing.T) string {
	return needBinary(t, "Prometheus 2.x (apt-get install prometheus)", os.Getenv("RWFIX_PROMETHEUS2"), "/usr/bin/prometheus")
}

// prometheus3 is Prometheus 3.x (v0.316.0): it sends RW 2.0 and receives both.
func prometheus3(t *testing.T) string {
	return needBinary(t, "Prometheus 3.x (go install github.com/prometheus/prometheus/cmd/prometheus@v0.316.0)",
		os.Getenv("RWFIX_PROMETHEUS3"), toolPath("prometheus-v0.316.0/prometheus"))
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is a started process that the test stops in Cleanup.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); lf.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- %s log (last 3 KiB):\n%s", name, tail(string(b), 3<<10))
		}
	})
	return p
}

// kill sends SIGKILL (a crash, an OOM kill) and waits for the exit.
func (p *proc) kill(t *testing.T) {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Errorf("%s did not die on SIGKILL", p.name)
	}
}

// stop sends SIGTERM, waits up to 20 s, then kills the process group.
func (p *proc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Logf("%s did not stop on SIGTERM; killing it", p.name)
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (p *proc) logText() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// waitFor polls cond every 200 ms until it is true or the timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return
		}
		lastErr = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s (last error: %v)", timeout, what, lastErr)
}

func waitReady(t *testing.T, p *proc, base string) {
	t.Helper()
	waitFor(t, p.name+" to be ready", 60*time.Second, func() (bool, error) {
		select {
		case <-p.done:
			t.Fatalf("%s exited: %v\n%s", p.name, p.err, tail(p.logText(), 3<<10))
		default:
		}
		resp, err := http.Get(base + "/-/ready")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("status %d", resp.StatusCode)
	})
}

// startPrometheus writes cfg and runs a Prometheus binary on a free port.
// extra are additional flags (e.g. --web.enable-remote-write-receiver).
func startPrometheus(t *testing.T, name, bin, cfg string, extra ...string) (base string, p *proc) {
	t.Helper()
	return startPrometheusIn(t, t.TempDir(), freePort(t), name, bin, cfg, extra...)
}

// startPrometheusIn runs Prometheus with its config and data in dir, on
// 127.0.0.1:port: calling it again with the same dir and port restarts it.
func startPrometheusIn(t *testing.T, dir string, port int, name, bin, cfg string, extra ...string) (base string, p *proc) {
	t.Helper()
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{bin,
		"--config.file=" + cfgPath,
		"--storage.tsdb.path=" + filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port),
	}, extra...)
	p = startProc(t, name, args...)
	base = fmt.Sprintf("http://127.0.0.1:%d", port)
	waitReady(t, p, base)
	return base, p
}

// startRwfix runs the rwfix binary on a free port.
func startRwfix(t *testing.T, args ...string) (base string, p *proc) {
	t.Helper()
	return startRwfixAt(t, freePort(t), args...)
}

// startRwfixAt runs the rwfix binary on 127.0.0.1:port. Its data directory
// is the default one unless args name another: the tests run in the
// repository, so a test that does not care gets a temporary one instead of
// data/ there.
func startRwfixAt(t *testing.T, port int, args ...string) (base string, p *proc) {
	t.Helper()
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--storage.path") }) {
		args = append(args, "--storage.path="+filepath.Join(t.TempDir(), "data"))
	}
	base = fmt.Sprintf("http://127.0.0.1:%d", port)
	p = startProc(t, "rwfix", append([]string{rwfixBin, fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port)}, args...)...)
	waitReady(t, p, base)
	return base, p
}

// promSample is one sample of a PromQL result.
type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
	Values [][2]any          `json:"values"`
}

// query runs an instant PromQL query (at ts when non-zero) through
// client_golang's API client, and returns its result as promSamples.
func query(t *testing.T, base, q string, ts time.Time) ([]promSample, error) {
	t.Helper()
	client, err := api.NewClient(api.Config{Address: base})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	val, _, _, err := promv1.NewAPI(client).Query(ctx, q, ts) // a zero ts: the server's now
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", q, err)
	}
	pair := func(t model.Time, v model.SampleValue) [2]any {
		return [2]any{float64(t) / 1000, v.String()}
	}
	var out []promSample
	switch v := val.(type) {
	case *model.Scalar:
		out = append(out, promSample{Value: pair(v.Timestamp, v.Value)})
	case model.Vector:
		for _, s := range v {
			out = append(out, promSample{Metric: metricMap(s.Metric), Value: pair(s.Timestamp, s.Value)})
		}
	case model.Matrix:
		for _, ss := range v {
			ps := promSample{Metric: metricMap(ss.Metric)}
			for _, p := range ss.Values {
				ps.Values = append(ps.Values, pair(p.Timestamp, p.Value))
			}
			out = append(out, ps)
		}
	default:
		return nil, fmt.Errorf("query %q: unexpected result type %s", q, val.Type())
	}
	return out, nil
}

func metricMap(m model.Metric) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[string(k)] = string(v)
	}
	return out
}

// scalarQuery runs q, which must return exactly one sample, and returns its value.
func scalarQuery(t *testing.T, base, q string, ts time.Time) (float64, error) {
	t.Helper()
	r, err := query(t, base, q, ts)
	if err != nil {
		return 0, err
	}
	if len(r) != 1 {
		return 0, fmt.Errorf("query %q: want 1 sample, got %d", q, len(r))
	}
	var f float64
	_, err = fmt.Sscan(r[0].Value[1].(string), &f)
	return f, err
}

// metricValue sums the samples named name (a family, or one of a histogram's
// or summary's _bucket, _count and _sum) in a /metrics page, parsed with
// expfmt, whose labels match every matcher: `label="value"` for that exact
// value, `label="prefix` (no closing quote) for values that start so.
func metricValue(t *testing.T, base, name string, matchers ...string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s/metrics: %v", base, err)
	}
	sum := 0.0
	for _, s := range flattenFamilies(families) {
		if s.name == name && labelsMatch(t, s.labels, matchers) {
			sum += s.value
		}
	}
	return sum
}

// flatSample is one line of a /metrics page.
type flatSample struct {
	name   string
	labels map[string]string
	value  float64
}

// flattenFamilies turns metric families into the samples of their text form.
func flattenFamilies(families map[string]*dto.MetricFamily) []flatSample {
	var out []flatSample
	for name, f := range families {
		for _, m := range f.GetMetric() {
			ls := map[string]string{}
			for _, l := range m.GetLabel() {
				ls[l.GetName()] = l.GetValue()
			}
			with := func(k, v string) map[string]string {
				c := maps.Clone(ls)
				c[k] = v
				return c
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out = append(out, flatSample{name, ls, m.GetCounter().GetValue()})
			case dto.MetricType_GAUGE:
				out = append(out, flatSample{name, ls, m.GetGauge().GetValue()})
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				for _, b := range h.GetBucket() {
					out = append(out, flatSample{name + "_bucket", with("le", strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64)), float64(b.GetCumulativeCount())})
				}
				out = append(out, flatSample{name + "_bucket", with("le", "+Inf"), float64(h.GetSampleCount())},
					flatSample{name + "_count", ls, float64(h.GetSampleCount())}, flatSample{name + "_sum", ls, h.GetSampleSum()})
			case dto.MetricType_SUMMARY:
				s := m.GetSummary()
				for _, q := range s.GetQuantile() {
					out = append(out, flatSample{name, with("quantile", strconv.FormatFloat(q.GetQuantile(), 'g', -1, 64)), q.GetValue()})
				}
				out = append(out, flatSample{name + "_count", ls, float64(s.GetSampleCount())}, flatSample{name + "_sum", ls, s.GetSampleSum()})
			default:
				out = append(out, flatSample{name, ls, m.GetUntyped().GetValue()})
			}
		}
	}
	return out
}

// labelsMatch reports whether ls matches every matcher of metricValue.
func labelsMatch(t *testing.T, ls map[string]string, matchers []string) bool {
	t.Helper()
	for _, m := range matchers {
		k, v, ok := strings.Cut(m, `="`)
		if !ok {
			t.Fatalf("matcher %q: want label=\"value\" or label=\"prefix", m)
		}
		if exact, isExact := strings.CutSuffix(v, `"`); isExact {
			if got, has := ls[k]; !has || got != exact {
				return false
			}
		} else if !strings.HasPrefix(ls[k], v) {
			return false
		}
	}
	return true
}

// postFixture sends a captured fixture file to rwfix at base as its sender
// did, and returns the fixture's bytes and rwfix's answer code.
func postFixture(t *testing.T, base, path string) (body []byte, code int) {
	t.Helper()
	body, proto := []byte("not snappy"), rwtest.ProtoV1
	if path != "" {
		c, err := rwtest.ReadCapture(path)
		if err != nil {
			t.Fatal(err)
		}
		body, proto = c.Body, c.Proto
	}
	return body, postWrite(t, base, proto, body)
}

// postWrite sends one compressed remote-write body to rwfix at base and
// returns its answer code.
func postWrite(t *testing.T, base string, proto remoteapi.WriteMessageType, body []byte) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/write", bytes.NewReader(body))
	req.Header.Set("Content-Type", wire.ContentType(proto))
	req.Header.Set("Content-Encoding", "snappy")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
