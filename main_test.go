package main

import (
	"errors"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/promslog"
	"golang.org/x/crypto/bcrypt"

	"github.com/rwfix/rwfix/remotewrite/rwtest"
)

func TestLoadConfig(t *testing.T) {
	cfg, err := loadConfig("testdata/config/example.yml", []string{"http://127.0.0.1:1/api/v1/write"}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Repair.Presets) != 1 || cfg.Repair.Presets[0] != "litellm" || len(cfg.Repair.RelabelConfigs) != 1 {
		t.Errorf("repair config = %+v", cfg.Repair)
	}
	if len(cfg.Upstreams) != 2 || cfg.Upstreams[0].Name != "receiver" || cfg.Upstreams[1].Name != "127.0.0.1:1" ||
		cfg.Upstreams[0].Headers["X-Scope-OrgID"] != "team-a" || time.Duration(cfg.Upstreams[1].Timeout) != 5*time.Second {
		t.Errorf("upstreams = %+v", cfg.Upstreams)
	}

	dir := t.TempDir()
	write := func(doc string) string {
		p := filepath.Join(dir, "c.yml")
		if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// No presets key: the litellm preset stays on. An empty list turns it off.
	if cfg, err := loadConfig(write("upstreams: [{url: 'http://a/b'}]"), nil, 0); err != nil || len(cfg.Repair.Presets) != 1 {
		t.Errorf("missing presets: %v %v", cfg, err)
	}
	if cfg, err := loadConfig(write("presets: []"), nil, 0); err != nil || len(cfg.Repair.Presets) != 0 {
		t.Errorf("presets: []: %v %v", cfg, err)
	}
	for doc, want := range map[string]string{
		"upstream: []": "line 1: field upstream not found",
		"upstreams: [{url: 'http://a/b'}, {url: 'http://a/c'}]": `name "a" used twice`,
		"upstreams: [{url: 'http://a/b', timeout: -1s}]":        "not a valid duration",
	} {
		if _, err := loadConfig(write(doc), nil, 0); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want error containing %q", doc, err, want)
		}
	}
}

func TestCheckConfigCommand(t *testing.T) {
	out, err := exec.Command(rwfixBin, "check", "config", "testdata/config/example.yml").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Errorf("valid file: %v %s", err, out)
	}
	out, err = exec.Command(rwfixBin, "check", "config", "testdata/config/bad.yml").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "relabel_configs[0]") {
		t.Errorf("invalid file: want exit 1 naming relabel_configs[0], got %v %s", err, out)
	}
}

func TestServeEndpointsAndShutdown(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t)
	base, p := startRwfix(t, "--upstream.url="+up.URL)
	for path, want := range map[string]string{
		"/-/healthy": "Healthy", "/-/ready": "Ready", "/metrics": "rwfix_config_last_reload_successful 1",
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1<<20)
		n, _ := resp.Body.Read(b)
		for n < len(b) {
			m, err := resp.Body.Read(b[n:])
			n += m
			if err != nil {
				break
			}
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b[:n]), want) {
			t.Errorf("GET %s: %d, want 200 containing %q", path, resp.StatusCode, want)
		}
	}
	resp, err := http.Get(base + "/api/v1/write")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /api/v1/write: %d, want 405", resp.StatusCode)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("exit after SIGTERM: %v, want 0", p.err)
		}
	case <-time.After(15 * time.Second):
		t.Error("rwfix did not exit after SIGTERM")
	}
}

func TestNoUpstreamIsAnError(t *testing.T) {
	out, err := exec.Command(rwfixBin, "--web.listen-address=127.0.0.1:0").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "no upstream") {
		t.Errorf("want exit 1 with 'no upstream', got %v %s", err, out)
	}
}

func TestWebConfigBasicAuth(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webCfg := filepath.Join(t.TempDir(), "web.yml")
	writeFile(t, webCfg, "basic_auth_users:\n  prom: "+string(hash)+"\n")
	up := rwtest.NewRecordingUpstream(t)
	port := freePort(t)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	startProc(t, "rwfix", rwfixBin, "--web.listen-address=127.0.0.1:"+strconv.Itoa(port), "--web.config.file="+webCfg, "--upstream.url="+up.URL,
		"--storage.path="+filepath.Join(t.TempDir(), "data"))
	waitFor(t, "rwfix to listen", 20*time.Second, func() (bool, error) {
		resp, err := http.Get(base + "/-/healthy")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return true, nil
	})
	for _, tc := range []struct {
		path, user, pass string
		want             int
	}{
		{"/metrics", "", "", http.StatusUnauthorized}, {"/metrics", "prom", "wrong", http.StatusUnauthorized}, {"/metrics", "prom", "pw", http.StatusOK},
		// The web page is behind the same gate.
		{"/", "", "", http.StatusUnauthorized}, {"/", "prom", "pw", http.StatusOK},
		{"/config", "", "", http.StatusUnauthorized}, {"/config", "prom", "pw", http.StatusOK},
		{"/playground", "", "", http.StatusUnauthorized}, {"/playground", "prom", "pw", http.StatusOK},
		{"/api/v1/repair", "", "", http.StatusUnauthorized}, {"/api/v1/repair", "prom", "pw", http.StatusMethodNotAllowed},
	} {
		req, _ := http.NewRequest(http.MethodGet, base+tc.path, nil)
		if tc.user != "" {
			req.SetBasicAuth(tc.user, tc.pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s, user %q: status %d, want %d", tc.path, tc.user, resp.StatusCode, tc.want)
		}
	}
}

func TestReloadKeepsRunningConfigOnError(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t)
	cfg := filepath.Join(t.TempDir(), "rwfix.yml")
	writeFile(t, cfg, "presets: [litellm]\n")
	base, p := startRwfix(t, "--config.file="+cfg, "--upstream.url="+up.URL, "--web.enable-lifecycle")
	reload := func() int {
		resp, err := http.Post(base+"/-/reload", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	writeFile(t, cfg, "presets: [nope]\n")
	if code := reload(); code != http.StatusInternalServerError {
		t.Errorf("reload of an invalid file: %d, want 500", code)
	}
	if v := metricValue(t, base, "rwfix_config_last_reload_successful"); v != 0 {
		t.Errorf("rwfix_config_last_reload_successful = %v after a failed reload, want 0", v)
	}
	// The status page says so, and the running configuration is the old one.
	if page := getPage(t, base+"/"); !strings.Contains(page, "failed: ") || !strings.Contains(page, "nope") {
		t.Error("the status page does not show the failed reload")
	}
	if page := getPage(t, base+"/config"); !strings.Contains(page, "- litellm") {
		t.Errorf("after a failed reload /config does not show the running configuration:\n%s", page)
	}
	// Still serving with the old configuration.
	resp, err := http.Get(base + "/-/ready")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("not ready after a failed reload: %v", err)
	}
	resp.Body.Close()
	writeFile(t, cfg, "presets: []\n")
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the SIGHUP reload", 10*time.Second, func() (bool, error) {
		return metricValue(t, base, "rwfix_config_last_reload_successful") == 1, nil
	})
	if code := reload(); code != http.StatusOK {
		t.Errorf("reload of a valid file: %d, want 200", code)
	}
	if page := getPage(t, base+"/"); !strings.Contains(page, `<span class="ok">success</span>`) {
		t.Error("the status page does not show the successful reload")
	}
	if page := getPage(t, base+"/config"); !strings.Contains(page, "presets: []") {
		t.Errorf("/config does not show the reloaded configuration:\n%s", page)
	}
}

// TestVersion: a plain go build in a git checkout shows a real version and
// the commit (the tests build the binary that way).
func TestVersion(t *testing.T) {
	out, err := exec.Command(rwfixBin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	text := string(out)
	if strings.Contains(text, "version  (") || strings.Contains(text, "version devel") {
		t.Errorf("no version: %s", text)
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout (%v): %s", err, text)
	}
	if rev := strings.TrimSpace(string(head)); !strings.Contains(text, "revision: "+rev) {
		t.Errorf("want revision %s in:\n%s", rev, text)
	}
	t.Logf("%s", text)
}

// TestRuntimeTuning: GOGC 75 unless GOGC is set, and GOMEMLIMIT from the
// cgroup memory limit (v2 in the process' cgroup or at the root, v1), none
// without a limit or with GOMEMLIMIT set — as Prometheus does.
func TestRuntimeTuning(t *testing.T) {
	fake := func(files map[string]string) string {
		root := t.TempDir()
		for p, c := range files {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(root, p), c)
		}
		return root
	}
	for _, c := range []struct {
		name  string
		files map[string]string
		want  int64
	}{
		{"v2, own cgroup", map[string]string{"proc/self/cgroup": "0::/kubepods/pod1/rwfix\n", "sys/fs/cgroup/kubepods/pod1/rwfix/memory.max": "268435456\n"}, 268435456},
		{"v2, at the root (cgroup namespace)", map[string]string{"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/memory.max": "134217728\n"}, 134217728},
		{"v2, no limit", map[string]string{"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/memory.max": "max\n", "sys/fs/cgroup/memory/memory.limit_in_bytes": "1048576\n"}, 0},
		{"v1", map[string]string{"proc/self/cgroup": "4:memory:/x\n", "sys/fs/cgroup/memory/memory.limit_in_bytes": "536870912\n"}, 536870912},
		{"v1, unlimited", map[string]string{"sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n"}, 0},
		{"nothing", nil, 0},
	} {
		got, ok := cgroupMemoryLimit(fake(c.files))
		if got != c.want || ok != (c.want > 0) {
			t.Errorf("%s: limit %d (%v), want %d", c.name, got, ok, c.want)
		}
	}

	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	logger := promslog.NewNopLogger()
	root := fake(map[string]string{"sys/fs/cgroup/memory.max": "268435456\n"})
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	tuneRuntime(logger, true, 0.9, root)
	if gc := debug.SetGCPercent(100); gc != 75 {
		t.Errorf("GOGC %d, want 75", gc)
	}
	limit, ratio := int64(268435456), 0.9
	if want := int64(float64(limit) * ratio); debug.SetMemoryLimit(-1) != want {
		t.Errorf("GOMEMLIMIT %d, want %d", debug.SetMemoryLimit(-1), want)
	}
	debug.SetMemoryLimit(math.MaxInt64)
	t.Setenv("GOGC", "100")
	t.Setenv("GOMEMLIMIT", "1GiB")
	tuneRuntime(logger, true, 0.9, root)
	if gc := debug.SetGCPercent(100); gc != 100 {
		t.Errorf("GOGC %d with GOGC=100 set, want 100", gc)
	}
	if limit := debug.SetMemoryLimit(-1); limit != math.MaxInt64 {
		t.Errorf("GOMEMLIMIT %d although GOMEMLIMIT is set", limit)
	}
}
