// The command's documentation, and what each file of this package holds:
// doc.go.

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/alecthomas/kingpin/v2"
	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/rwfix/rwfix/remotewrite"
	"github.com/rwfix/rwfix/remotewrite/ui"
)

// A release build sets the version with -ldflags, as Prometheus' own builds
// do (see docs/operations.md, "Version"):
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
	// Help and --version on stdout, as Prometheus prints them; errors stay
	// on stderr. The top-level help lists serve's flags too: serve is what
	// `rwfix` alone runs.
	app.UsageWriter(os.Stdout)
	app.ErrorWriter(os.Stderr)
	app.UsageTemplate(usageTemplate)

	serve := app.Command("serve", "Receive remote write, repair, forward (the default).").Default()
	webFlags := kingpinflag.AddFlags(serve, ":9201")
	configFile := serve.Flag("config.file", "Configuration file (YAML). Optional: without it the litellm preset runs and --upstream.url gives the upstreams.").String()
	upstreamURLs := serve.Flag("upstream.url", "Remote-write URL to forward to. Repeatable; added to the upstreams of --config.file.").Strings()
	upstreamTimeout := serve.Flag("upstream.timeout", "Timeout of one request to an --upstream.url upstream.").Default("30s").Duration()
	blankShare := serve.Flag("upstream.max-blanked-share", "Largest share of a forwarded request's bytes that may be series blanked in place (their bytes kept under an unknown protobuf field that receivers skip) instead of cut out, so that the sender's compressed bytes are reused rather than compressed again; 0: cut out, compress anew.").Default(strconv.FormatFloat(remotewrite.DefaultBlankShare, 'g', -1, 64)).Float64()
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
	autoMemLimit := serve.Flag("auto-gomemlimit", "Set GOMEMLIMIT to --auto-gomemlimit.ratio of the container's memory limit (cgroup), as Prometheus does; an explicit GOMEMLIMIT wins.").Default("true").Bool()
	autoMemRatio := serve.Flag("auto-gomemlimit.ratio", "The share of the container's memory limit that GOMEMLIMIT is set to.").Default("0.9").Float64()

	sub := addCommands(app)

	logCfg := &promslog.Config{}
	promslogflag.AddFlags(app, logCfg)

	cmd, err := app.Parse(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	logger := promslog.New(logCfg)

	if rc, ok := sub.run(cmd); ok {
		return rc
	}
	if *autoMemRatio <= 0 || *autoMemRatio > 1 {
		fmt.Fprintln(os.Stderr, "--auto-gomemlimit.ratio must be greater than 0 and at most 1")
		return 2
	}
	if !(*blankShare >= 0 && *blankShare <= 1) { // NaN too
		fmt.Fprintln(os.Stderr, "--upstream.max-blanked-share must be between 0 and 1")
		return 2
	}
	tuneRuntime(logger, *autoMemLimit, *autoMemRatio, memlimit.FromCgroup)
	if *captureDir != "" {
		// Like Prometheus' data directory: created at start, or the start
		// fails, rather than every request failing to be recorded.
		if err := os.MkdirAll(*captureDir, 0o755); err != nil {
			logger.Error("--capture.dir cannot be created", "dir", *captureDir, "err", err)
			return 1
		}
	}

	start := time.Now()
	recorder := ui.NewRecorder()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		versioncollector.NewCollector("rwfix"))
	handler := remotewrite.NewHandler(nil, nil,
		remotewrite.WithLogger(logger),
		remotewrite.WithMetrics(remotewrite.NewMetrics(reg)),
		remotewrite.WithLimits(*maxBody, *maxDecoded),
		remotewrite.WithInflightLimits(*maxInflight, *maxInflightBytes),
		remotewrite.WithDryRun(*dryRun),
		remotewrite.WithBlankShare(*blankShare),
		remotewrite.WithCapture(*captureDir, *captureMaxReq, *captureMaxBytes),
		remotewrite.WithObserver(recorder, ui.MaxChangesPerRequest))
	rl := newReloader(*configFile, *upstreamURLs, *upstreamTimeout, *storagePath, handler, reg, logger)
	if err := rl.reload(); err != nil {
		return 1
	}

	var ready atomic.Bool
	mux := newMux(webRoutes{
		handler: handler, reg: reg, reloader: rl, ready: &ready, lifecycle: *lifecycle, recorder: recorder, start: start,
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
		// Merged samples of a tenant whose sender stopped go out on their
		// own; stopped with the rest (what is in flight stays queued).
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error {
			handler.RunIdleFlush(ctx, remotewrite.IdleFlushEvery)
			return nil
		}, func(error) { cancel() })
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

// usageTemplate is kingpin's, plus, in the top-level help, the flags of
// the default command (serve).
var usageTemplate = kingpin.DefaultUsageTemplate + `{{if not .Context.SelectedCommand -}}
{{range .App.Commands}}{{if .Default}}
Flags of {{.Name}} (the default command; also "rwfix {{.Name}} --help"):
{{.Flags|FlagsToTwoColumns|FormatTwoColumns}}
{{end}}{{end -}}
{{end -}}
`

// tuneRuntime sets the garbage collector as Prometheus does: GOGC 75 unless
// the GOGC variable is set (the load benchmark's peak RSS under repair-heavy
// traffic drops from about 138 to 116 MiB at the same CPU), and, with auto,
// GOMEMLIMIT to ratio of the memory limit that limit reports (the cgroup's:
// memlimit.FromCgroup reads cgroup v2 and v1, the process' own cgroup and
// its ancestors, as Prometheus does), unless GOMEMLIMIT is set. Near the
// limit the collector then works harder instead of the kernel killing the
// process. No limit (or none found): no change.
func tuneRuntime(logger *slog.Logger, auto bool, ratio float64, limit memlimit.Provider) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(75)
	}
	if !auto {
		return
	}
	if v, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		logger.Info("GOMEMLIMIT set in the environment; --auto-gomemlimit leaves it", "GOMEMLIMIT", v)
		return
	}
	var found uint64
	provider := func() (uint64, error) {
		l, err := limit()
		if err != nil {
			if !errors.Is(err, memlimit.ErrNoLimit) {
				logger.Debug("no memory limit found; GOMEMLIMIT unchanged", "err", err)
			}
			return 0, memlimit.ErrNoLimit // no limit: no change
		}
		found = l
		return l, nil
	}
	before := debug.SetMemoryLimit(-1)
	set, err := memlimit.Set(memlimit.WithRatio(ratio), memlimit.WithProvider(provider))
	switch {
	case err != nil:
		logger.Warn("setting GOMEMLIMIT from the memory limit failed; GOMEMLIMIT unchanged", "err", err)
	case found == 0:
		debug.SetMemoryLimit(before) // no limit: no change
	default:
		logger.Info("GOMEMLIMIT set from the container's memory limit", "limit_bytes", found, "ratio", ratio, "gomemlimit_bytes", set)
	}
}
