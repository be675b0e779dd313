// Command rwfix is a Prometheus remote-write relay that repairs series on the
// way to the real TSDB. See README.md.
//
// main.go holds flags, configuration loading and reload, wiring, the HTTP
// server, signals and graceful shutdown. The protocol lives in remotewrite/,
// the repairs in relabel/.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"
	"go.yaml.in/yaml/v2"

	"github.com/rwfix/rwfix/relabel"
	"github.com/rwfix/rwfix/remotewrite"
	"github.com/rwfix/rwfix/remotewrite/offline"
)

// fileConfig is the configuration file. The repair settings sit at the top
// level (presets, relabel_configs) so a write_relabel_configs block pastes in
// unchanged.
type fileConfig struct {
	// Repair is a named field, not embedded: embedding would promote
	// relabel.Config's UnmarshalYAML and hide the upstreams key.
	Repair    relabel.Config               `yaml:",inline"`
	Upstreams []remotewrite.UpstreamConfig `yaml:"upstreams,omitempty"`
	Limits    remotewrite.Limits           `yaml:"limits,omitempty"`
}

func (c *fileConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = fileConfig{Repair: relabel.DefaultConfig(), Limits: remotewrite.DefaultLimits()}
	type plain fileConfig
	return unmarshal((*plain)(c))
}

// loadConfig reads and validates the file ("" means the defaults). Upstream
// URLs from flags are appended to the file's upstreams.
func loadConfig(path string, flagURLs []string, flagTimeout time.Duration) (*fileConfig, error) {
	cfg := &fileConfig{Repair: relabel.DefaultConfig(), Limits: remotewrite.DefaultLimits()}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		if err := yaml.UnmarshalStrict(data, cfg); err != nil {
			return nil, fmt.Errorf("parsing %s: %w", path, err)
		}
		dir := filepath.Dir(path)
		for i := range cfg.Upstreams {
			cfg.Upstreams[i].HTTPClientConfig.SetDirectory(dir) // credential files relative to the config file
		}
	}
	for _, u := range flagURLs {
		pu, err := url.Parse(u)
		if err != nil {
			return nil, fmt.Errorf("--upstream.url %q: %w", u, err)
		}
		cfg.Upstreams = append(cfg.Upstreams, remotewrite.UpstreamConfig{
			URL: &config.URL{URL: pu}, Timeout: model.Duration(flagTimeout),
			HTTPClientConfig: config.DefaultHTTPClientConfig,
		})
	}
	if err := cfg.Repair.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.Limits.Validate(); err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for i := range cfg.Upstreams {
		if err := cfg.Upstreams[i].Validate(); err != nil {
			return nil, fmt.Errorf("upstreams[%d]: %w", i, err)
		}
		if names[cfg.Upstreams[i].Name] {
			return nil, fmt.Errorf("upstreams[%d]: name %q used twice; give each upstream a distinct name", i, cfg.Upstreams[i].Name)
		}
		names[cfg.Upstreams[i].Name] = true
	}
	return cfg, nil
}

// reloader builds rules and upstreams from the configuration and swaps them
// into the handler; a bad file leaves the running configuration in place.
type reloader struct {
	mu          sync.Mutex
	path        string
	flagURLs    []string
	flagTimeout time.Duration
	handler     *remotewrite.Handler
	relabelM    *relabel.Metrics
	reg         prometheus.Registerer
	merger      *relabel.Merger // created on the first load; kept across reloads
	storagePath string          // the data directory ("" : merge state in memory only)
	logOpen     bool
	logger      *slog.Logger
	success     prometheus.Gauge
	successTime prometheus.Gauge
}

func (r *reloader) reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.apply()
	if err != nil {
		r.success.Set(0)
		r.logger.Error("loading configuration failed; keeping the running one", "file", r.path, "err", err)
		return err
	}
	r.success.Set(1)
	r.successTime.SetToCurrentTime()
	return nil
}

func (r *reloader) apply() error {
	cfg, err := loadConfig(r.path, r.flagURLs, r.flagTimeout)
	if err != nil {
		return err
	}
	if len(cfg.Upstreams) == 0 {
		return errors.New("no upstream: give --upstream.url or an upstreams list in --config.file")
	}
	if r.merger == nil {
		r.merger = relabel.NewMerger(cfg.Repair.Collision, r.reg)
	}
	if c := cfg.Repair.Collision; c.Warmup != 0 || c.StateFile != "" {
		r.logger.Warn("collision.warmup and collision.state_file are no longer used and are ignored: the merge holds no output for a fixed time, and keeps its state in --storage.path")
	}
	if !r.logOpen && r.storagePath != "" && cfg.Repair.Collision.Policy == relabel.PolicyMerge {
		// Like Prometheus with its TSDB: without its durable state the merge
		// could not keep its guarantees across a crash, so a directory that
		// cannot be used stops the start.
		n, err := r.merger.OpenLog(r.storagePath)
		switch {
		case errors.Is(err, relabel.ErrCorruptLog):
			r.logger.Error("merge state damaged; merged outputs are learned afresh", "err", err)
		case err != nil:
			return fmt.Errorf("--storage.path: %w", err)
		default:
			r.logger.Info("merge state restored", "dir", r.storagePath, "outputs", n)
		}
		r.logOpen = true
	}
	p, err := relabel.New(cfg.Repair, r.relabelM, r.merger)
	if err != nil {
		return err
	}
	ups := make([]*remotewrite.Upstream, 0, len(cfg.Upstreams))
	for _, uc := range cfg.Upstreams {
		u, err := remotewrite.NewUpstream(uc)
		if err != nil {
			return err
		}
		ups = append(ups, u)
	}
	r.handler.Update(p, ups)
	r.handler.UpdateLimits(cfg.Limits)
	names := make([]string, len(ups))
	for i, u := range ups {
		names[i] = u.Name()
	}
	r.logger.Info("configuration loaded", "presets", cfg.Repair.Presets, "rules", p.String(), "upstreams", names)
	return nil
}

// A release build sets the version with -ldflags, as Prometheus' own builds
// do (see README, "Version"):
//
//	go build -ldflags "-X github.com/prometheus/common/version.Version=1.2.3 \
//	  -X github.com/prometheus/common/version.Revision=$(git rev-parse HEAD) \
//	  -X github.com/prometheus/common/version.Branch=$(git rev-parse --abbrev-ref HEAD) \
//	  -X github.com/prometheus/common/version.BuildDate=$(date -u +%Y%m%d-%H:%M:%S)" .
//
// A plain `go build` or `go install` leaves them empty; then Go's build info
// fills them: the module version (go install module@v1.2.3 gives 1.2.3; a
// build in a git checkout, Go's pseudo-version of the commit, +dirty when the
// tree has changes), the commit time as the build date. The revision comes
// from vcs.revision (prometheus/common computes it, "-modified" when dirty).
func init() {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	if version.Version == "" {
		v := bi.Main.Version
		if v == "" || v == "(devel)" {
			v = "devel"
		}
		version.Version = strings.TrimPrefix(v, "v")
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.time" && version.BuildDate == "" {
			version.BuildDate = s.Value
		}
	}
}

func main() {
	os.Exit(runMain(os.Args[1:]))
}

func runMain(args []string) int {
	app := kingpin.New("rwfix", "A Prometheus remote-write relay that repairs series (LiteLLM's status_code=\"None\" first) on the way to the real TSDB.")
	app.Version(version.Print("rwfix"))
	app.HelpFlag.Short('h')

	serve := app.Command("serve", "Receive remote write, repair, forward (the default).").Default()
	webFlags := kingpinflag.AddFlags(serve, ":9201")
	configFile := serve.Flag("config.file", "Configuration file (YAML). Optional: without it the litellm preset runs and --upstream.url gives the upstreams.").String()
	upstreamURLs := serve.Flag("upstream.url", "Remote-write URL to forward to. Repeatable; added to the upstreams of --config.file.").Strings()
	upstreamTimeout := serve.Flag("upstream.timeout", "Timeout of one request to an --upstream.url upstream.").Default("30s").Duration()
	lifecycle := serve.Flag("web.enable-lifecycle", "Enable POST /-/reload.").Bool()
	maxBody := serve.Flag("web.max-request-bytes", "Largest compressed request body accepted (413 beyond).").Default(strconv.Itoa(remotewrite.DefaultMaxBodyBytes)).Int()
	maxDecoded := serve.Flag("web.max-decoded-bytes", "Largest decompressed request body accepted, checked from the snappy header before allocating (413 beyond).").Default(strconv.Itoa(remotewrite.DefaultMaxDecodedBytes)).Int()
	maxInflight := serve.Flag("web.max-inflight-requests", "Requests handled at once; beyond, 503 with Retry-After (0: no cap).").Default("256").Int()
	maxInflightBytes := serve.Flag("web.max-inflight-bytes", "Compressed request bytes handled at once; beyond, 503 with Retry-After (0: no cap).").Default("268435456").Int64()
	storagePath := serve.Flag("storage.path", "Data directory: the merge state's log (merge.log). Relative to the working directory, as Prometheus' --storage.tsdb.path; empty keeps the state in memory only (a crash then makes merged outputs learn their sources afresh).").Default("data/").String()
	dryRun := serve.Flag("dry-run", "Forward every request unchanged; count (rwfix_dry_run_series_total) and log what the rules would have repaired, merged or dropped.").Bool()
	drain := serve.Flag("web.shutdown-timeout", "On SIGTERM, how long in-flight requests may take to finish.").Default("30s").Duration()

	captureDir := serve.Flag("capture.dir", "Record incoming request bodies (as received, .rw1/.rw2) to this directory, for `rwfix replay`.").String()
	captureMaxReq := serve.Flag("capture.max-requests", "Stop recording after this many requests.").Default("100").Int()
	captureMaxBytes := serve.Flag("capture.max-bytes", "Stop recording after this many bytes.").Default("67108864").Int64()

	test := app.Command("test", "Test rules offline.")
	testRules := test.Command("rules", "Run promtool-style unit tests of the repairs (see testdata/rules/).")
	testFiles := testRules.Arg("test-file", "Test files.").Required().ExistingFiles()

	replay := app.Command("replay", "Show what the configured pipeline would change in captured remote-write bodies.")
	replayConfig := replay.Flag("config.file", "rwfix configuration (default: the built-in defaults).").String()
	replayFull := replay.Flag("full", "Print every request before and after.").Bool()
	replayPaths := replay.Arg("path", ".rw1/.rw2 files or directories of them (testdata/fixtures, or a --capture.dir).").Required().Strings()

	check := app.Command("check", "Check a configuration.")
	checkConfig := check.Command("config", "Check a configuration file; exit non-zero if it is invalid.")
	checkFiles := checkConfig.Arg("file", "Configuration files.").Required().ExistingFiles()

	logCfg := &promslog.Config{}
	promslogflag.AddFlags(app, logCfg)

	cmd, err := app.Parse(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	logger := promslog.New(logCfg)

	switch cmd {
	case checkConfig.FullCommand():
		return checkConfigFiles(*checkFiles)
	case testRules.FullCommand():
		failed, err := offline.RunRuleTests(os.Stdout, *testFiles, offlineRepairer)
		if err != nil {
			fmt.Fprintln(os.Stderr, "FAILED:", err)
			return 1
		}
		if failed > 0 {
			fmt.Printf("%d tests FAILED\n", failed)
			return 1
		}
		return 0
	case replay.FullCommand():
		rep, err := offlineRepairer(*replayConfig)
		if err == nil {
			err = offline.Replay(os.Stdout, *replayPaths, rep, *replayFull)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "FAILED:", err)
			return 1
		}
		return 0
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		versioncollector.NewCollector("rwfix"))
	handler := remotewrite.NewHandler(nil, nil,
		remotewrite.WithLogger(logger),
		remotewrite.WithMetrics(remotewrite.NewMetrics(reg)),
		remotewrite.WithLimits(*maxBody, *maxDecoded),
		remotewrite.WithInflightLimits(*maxInflight, *maxInflightBytes),
		remotewrite.WithDryRun(*dryRun),
		remotewrite.WithCapture(*captureDir, *captureMaxReq, *captureMaxBytes))
	f := promauto.With(reg)
	rl := &reloader{
		path: *configFile, flagURLs: *upstreamURLs, flagTimeout: *upstreamTimeout,
		handler: handler, relabelM: relabel.NewMetrics(reg), reg: reg, logger: logger, storagePath: *storagePath,
		success: f.NewGauge(prometheus.GaugeOpts{Namespace: "rwfix", Name: "config_last_reload_successful",
			Help: "Whether the last configuration load succeeded."}),
		successTime: f.NewGauge(prometheus.GaugeOpts{Namespace: "rwfix", Name: "config_last_reload_success_timestamp_seconds",
			Help: "Time of the last successful configuration load."}),
	}
	if err := rl.reload(); err != nil {
		return 1
	}

	var ready atomic.Bool
	mux := http.NewServeMux()
	mux.Handle("/api/v1/write", handler)
	mux.Handle("/api/v1/push", handler)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	// Profiling, as Prometheus serves it: /debug/pprof/.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "rwfix is Healthy.")
	})
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "rwfix is not ready.", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "rwfix is Ready.")
	})
	mux.HandleFunc("/-/reload", func(w http.ResponseWriter, r *http.Request) {
		if !*lifecycle {
			http.Error(w, "Lifecycle API is not enabled (--web.enable-lifecycle).", http.StatusForbidden)
			return
		}
		if r.Method != http.MethodPost && r.Method != http.MethodPut {
			http.Error(w, "Only POST or PUT requests allowed.", http.StatusMethodNotAllowed)
			return
		}
		if err := rl.reload(); err != nil {
			http.Error(w, "failed to reload config: "+err.Error(), http.StatusInternalServerError)
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second}

	var g run.Group
	{
		term := make(chan os.Signal, 1)
		signal.Notify(term, os.Interrupt, syscall.SIGTERM)
		cancel := make(chan struct{})
		g.Add(func() error {
			select {
			case s := <-term:
				logger.Info("received signal, draining in-flight requests", "signal", s.String(), "timeout", drain.String())
			case <-cancel:
			}
			return nil
		}, func(error) { close(cancel) })
	}
	{
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		cancel := make(chan struct{})
		g.Add(func() error {
			for {
				select {
				case <-hup:
					_ = rl.reload()
				case <-cancel:
					return nil
				}
			}
		}, func(error) { close(cancel) })
	}
	{
		g.Add(func() error {
			ready.Store(true)
			logger.Info("starting rwfix", "version", version.Info(), "listen", *webFlags.WebListenAddresses)
			if err := web.ListenAndServe(srv, webFlags, logger); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		}, func(error) {
			ready.Store(false)
			ctx, cancel := context.WithTimeout(context.Background(), *drain)
			defer cancel()
			// Shutdown stops accepting and waits for in-flight requests, each of
			// which ends only when every upstream has answered.
			if err := srv.Shutdown(ctx); err != nil {
				logger.Error("in-flight requests did not finish in time", "err", err)
			}
		})
	}
	err = g.Run()
	if rl.merger != nil {
		if cerr := rl.merger.Close(); cerr != nil {
			logger.Error("writing the merge state failed", "dir", rl.storagePath, "err", cerr)
		}
	}
	if err != nil {
		logger.Error("rwfix stopped", "err", err)
		return 1
	}
	logger.Info("rwfix stopped")
	return 0
}

// offlineRepairer builds the pipeline of a configuration file ("" for the
// defaults) for `test rules` and `replay`: as the server would, but with no
// merge warm-up, since there is no earlier traffic to wait for.
func offlineRepairer(path string) (remotewrite.Repairer, error) {
	cfg, err := loadConfig(path, nil, 0)
	if err != nil {
		return nil, err
	}
	cfg.Repair.Collision.Warmup = 0
	return relabel.New(cfg.Repair, nil, nil)
}

// checkConfigFiles is `rwfix check config FILE...`.
func checkConfigFiles(files []string) int {
	rc := 0
	for _, f := range files {
		cfg, err := loadConfig(f, nil, 0)
		if err == nil {
			_, err = relabel.New(cfg.Repair, nil, nil)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "FAILED: %s: %v\n", f, err)
			rc = 1
			continue
		}
		fmt.Printf("SUCCESS: %s is valid: presets %v, %d relabel rules, %d upstreams\n", f, cfg.Repair.Presets, len(cfg.Repair.RelabelConfigs), len(cfg.Upstreams))
	}
	return rc
}
