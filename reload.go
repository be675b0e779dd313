package main

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/rwfix/rwfix/relabel"
	"github.com/rwfix/rwfix/remotewrite"
	"github.com/rwfix/rwfix/remotewrite/ui"
)

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
	// mergeClock, when set, is the merge state's clock from its creation on
	// (before its log is replayed); nil is the wall clock. The fault
	// simulation (sim_test.go) runs rwfix on its simulated clock.
	mergeClock  func() time.Time
	mergeBoot   string // the simulation's boot of the machine ("": the real one)
	logger      *slog.Logger
	success     prometheus.Gauge
	successTime prometheus.Gauge

	// What the status page shows: the last load, its result, and the
	// configuration running.
	lastTime time.Time
	lastErr  error
	running  *fileConfig
	upstream []ui.Upstream
}

// newReloader returns the reloader of the configuration file path (""
// for the defaults), with its metrics registered with reg.
func newReloader(path string, flagURLs []string, flagTimeout time.Duration, storagePath string,
	handler *remotewrite.Handler, reg prometheus.Registerer, logger *slog.Logger,
) *reloader {
	f := promauto.With(reg)
	return &reloader{
		path: path, flagURLs: flagURLs, flagTimeout: flagTimeout,
		handler: handler, relabelM: relabel.NewMetrics(reg), reg: reg, logger: logger, storagePath: storagePath,
		success: f.NewGauge(prometheus.GaugeOpts{Namespace: "rwfix", Name: "config_last_reload_successful",
			Help: "Whether the last configuration load succeeded."}),
		successTime: f.NewGauge(prometheus.GaugeOpts{Namespace: "rwfix", Name: "config_last_reload_success_timestamp_seconds",
			Help: "Time of the last successful configuration load."}),
	}
}

func (r *reloader) reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.apply()
	r.lastTime, r.lastErr = time.Now(), err
	if err != nil {
		r.success.Set(0)
		if r.running == nil {
			// At start there is no running configuration to keep: rwfix
			// stops (exit 1).
			r.logger.Error("loading configuration failed; rwfix cannot start", "file", r.path, "err", err)
		} else {
			r.logger.Error("reloading configuration failed; keeping the running one", "file", r.path, "err", err)
		}
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
	if c := cfg.Repair.Collision; c.Warmup != 0 || c.StateFile != "" {
		r.logger.Warn("collision.warmup and collision.state_file are no longer used and are ignored: the merge holds no output for a fixed time, and keeps its state in --storage.path")
	}
	// All or nothing: everything that can refuse the configuration is built
	// first; the running merge state learns the new limits, and the handler
	// the new rules and upstreams, only once nothing can fail any more.
	if r.merger == nil {
		// Registers the merge metrics, once per process; its limits are
		// those of the first configuration that Activates.
		r.merger = relabel.NewMerger(cfg.Repair.Collision, r.reg)
		if r.mergeClock != nil {
			r.merger.SetProcessClock(r.mergeClock) // the fault simulation's
		}
		if r.mergeBoot != "" {
			r.merger.SetBoot(r.mergeBoot)
		}
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
	if !r.logOpen && r.storagePath != "" {
		// Like Prometheus with its TSDB: without its durable state the merge
		// could not keep its guarantees across a crash, so a directory that
		// cannot be used stops the start. Opened whatever the policy: a
		// state left by a merge before keep_distinct still has samples to
		// send (see relabel/retire.go), and comes back with the merge.
		n, err := r.merger.OpenLog(r.storagePath)
		switch {
		case errors.Is(err, relabel.ErrCorruptLog):
			r.logger.Error("merge state damaged; merged outputs are learned afresh", "err", err)
		case err != nil:
			return fmt.Errorf("--storage.path: %w", err)
		default:
			r.logger.Info("merge state restored", "dir", r.storagePath, "outputs", n, "unclean_end", r.merger.UncleanEnd(), "power_loss", r.merger.PowerLoss())
		}
		r.logOpen = true
	}
	// A change of the upstreams' forward_headers changes every request's
	// merge partition — by this reload, or while rwfix was down (the merge
	// state keeps the scheme): the outputs of the old ones are orphaned.
	p.Activate(r.merger.Partitions(partitionScheme(cfg.Upstreams)))
	r.handler.Update(p, ups)
	r.running = cfg
	r.upstream = r.upstream[:0]
	for _, uc := range cfg.Upstreams {
		r.upstream = append(r.upstream, ui.Upstream{Name: uc.Name, URL: uc.URL.Redacted()})
	}
	r.handler.UpdateLimits(cfg.Limits)
	names := make([]string, len(ups))
	for i, u := range ups {
		names[i] = u.Name()
	}
	r.logger.Info("configuration loaded", "presets", cfg.Repair.Presets, "rules", p.String(), "upstreams", names)
	return nil
}

// status is the reload state, for the status page.
func (r *reloader) status() ui.ReloadStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := ui.ReloadStatus{File: r.path, Time: r.lastTime, Upstreams: append([]ui.Upstream(nil), r.upstream...)}
	if r.lastErr != nil {
		st.Error = r.lastErr.Error()
	}
	if r.running != nil {
		st.Repair = r.running.Repair
	}
	return st
}

// configYAML is the running configuration, secrets hidden.
func (r *reloader) configYAML() ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return redactedYAML(r.running)
}

// partitionScheme names how requests are partitioned for the merge: the
// forwarded header names of each upstream, in order (see
// remotewrite.partition).
func partitionScheme(ups []remotewrite.UpstreamConfig) string {
	var b strings.Builder
	for _, u := range ups {
		b.WriteString(strings.Join(u.ForwardHeaders, "\x00"))
		b.WriteString("\x01")
	}
	return b.String()
}
