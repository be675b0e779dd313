package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
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
		"upstream: []": "line 1: unknown field \"upstream\"",
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

// TestRuntimeTuning: GOGC 75 unless GOGC is set, and GOMEMLIMIT at the
// ratio of the memory limit (automemlimit's cgroup provider in production),
// none without a limit, when the provider fails, or with GOMEMLIMIT set — as
// Prometheus does. What was set is logged.
func TestRuntimeTuning(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	unset := func(name string) {
		t.Setenv(name, "") // restored after the test
		os.Unsetenv(name)
	}
	unset("GOGC")
	unset("GOMEMLIMIT")
	unset("AUTOMEMLIMIT")

	limit := uint64(268435456)
	tuneRuntime(logger, true, 0.9, memlimit.Limit(limit))
	if gc := debug.SetGCPercent(100); gc != 75 {
		t.Errorf("GOGC %d, want 75", gc)
	}
	want := int64(float64(limit) * 0.9)
	if got := debug.SetMemoryLimit(-1); got != want {
		t.Errorf("GOMEMLIMIT %d, want %d", got, want)
	}
	if !strings.Contains(logs.String(), "GOMEMLIMIT set") || !strings.Contains(logs.String(), "gomemlimit_bytes="+strconv.FormatInt(want, 10)) {
		t.Errorf("what was set is not logged:\n%s", logs.String())
	}

	// No limit, or no cgroup to read: no change, and no GOMEMLIMIT logged.
	for name, p := range map[string]memlimit.Provider{
		"no limit":  func() (uint64, error) { return 0, memlimit.ErrNoLimit },
		"no cgroup": func() (uint64, error) { return 0, errors.New("no cgroup here") },
	} {
		debug.SetMemoryLimit(123 << 20)
		logs.Reset()
		tuneRuntime(logger, true, 0.9, p)
		if got := debug.SetMemoryLimit(-1); got != 123<<20 {
			t.Errorf("%s: GOMEMLIMIT changed to %d", name, got)
		}
		if strings.Contains(logs.String(), "GOMEMLIMIT set") || strings.Contains(logs.String(), "level=WARN") {
			t.Errorf("%s: logged\n%s", name, logs.String())
		}
	}
	debug.SetMemoryLimit(math.MaxInt64)

	// --no-auto-gomemlimit, and an explicit GOMEMLIMIT, win.
	tuneRuntime(logger, false, 0.9, memlimit.Limit(limit))
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("GOMEMLIMIT %d with --no-auto-gomemlimit", got)
	}
	debug.SetGCPercent(100)
	t.Setenv("GOGC", "100")
	t.Setenv("GOMEMLIMIT", "1GiB")
	tuneRuntime(logger, true, 0.9, memlimit.Limit(limit))
	if gc := debug.SetGCPercent(100); gc != 100 {
		t.Errorf("GOGC %d with GOGC=100 set, want 100", gc)
	}
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("GOMEMLIMIT %d although GOMEMLIMIT is set", got)
	}
}

// TestAutoMemLimitFromCgroup runs the rwfix binary in a memory cgroup of its
// own whose limit is set on the parent (a systemd slice, a pod-level limit),
// below this process' own cgroup (cgroup v1 here, v2 where mounted so): the
// GOMEMLIMIT it logs is 0.9 of that limit. Skipped where cgroups cannot be
// created (not root, a read-only cgroup file system).
func TestAutoMemLimitFromCgroup(t *testing.T) {
	own, v2 := ownMemoryCgroup(t)
	parent := filepath.Join(own, fmt.Sprintf("rwfix-test-%d", os.Getpid()))
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Skipf("cannot create a memory cgroup under %s: %v", own, err)
	}
	t.Cleanup(func() { _ = os.Remove(parent) })
	child := filepath.Join(parent, "rwfix")
	if err := os.Mkdir(child, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(child) }) // runs first: the process has exited by then
	limitFile := "memory.limit_in_bytes"
	if v2 {
		limitFile = "memory.max"
		// The parent must hand the memory controller down to the child.
		_ = os.WriteFile(filepath.Join(own, "cgroup.subtree_control"), []byte("+memory"), 0o644)
		_ = os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte("+memory"), 0o644)
	}
	const limit = 512 << 20
	if err := os.WriteFile(filepath.Join(parent, limitFile), []byte(strconv.Itoa(limit)), 0o644); err != nil {
		t.Skipf("cannot set a memory limit: %v", err)
	}
	up := rwtest.NewRecordingUpstream(t)
	port := freePort(t)
	// The shell moves itself into the child cgroup, then becomes rwfix.
	script := `echo $$ > "$1/cgroup.procs" && shift && exec "$@"`
	p := startProc(t, "rwfix", "sh", "-c", script, "sh", child, rwfixBin, "--web.listen-address=127.0.0.1:"+strconv.Itoa(port),
		"--upstream.url="+up.URL, "--storage.path="+filepath.Join(t.TempDir(), "data"))
	waitReady(t, p, "http://127.0.0.1:"+strconv.Itoa(port))
	want := fmt.Sprintf("gomemlimit_bytes=%d", uint64(limit*9/10))
	if log := p.logText(); !strings.Contains(log, "GOMEMLIMIT set") || !strings.Contains(log, want) {
		t.Errorf("want %s logged, from the parent cgroup's limit:\n%s", want, log)
	}
	p.stop(t)
}

// ownMemoryCgroup is the directory of this process' memory cgroup: the v1
// memory controller's, or the v2 unified hierarchy's.
func ownMemoryCgroup(t *testing.T) (dir string, v2 bool) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skipf("no cgroups: %v", err)
	}
	var unified string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if slices.Contains(strings.Split(parts[1], ","), "memory") {
			if d := filepath.Join("/sys/fs/cgroup/memory", parts[2]); isDir(d) {
				return d, false
			}
		}
		if parts[0] == "0" && parts[1] == "" {
			unified = parts[2]
		}
	}
	for _, mnt := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		d := filepath.Join(mnt, unified)
		if _, err := os.Stat(filepath.Join(d, "cgroup.controllers")); err == nil {
			if c, _ := os.ReadFile(filepath.Join(d, "cgroup.controllers")); strings.Contains(string(c), "memory") {
				return d, true
			}
		}
	}
	t.Skip("no memory cgroup controller found")
	return "", false
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
