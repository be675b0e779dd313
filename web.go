package main

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rwfix/rwfix/remotewrite"
	"github.com/rwfix/rwfix/remotewrite/ui"
)

// webRoutes is what the HTTP routes serve.
type webRoutes struct {
	handler   *remotewrite.Handler
	reg       *prometheus.Registry
	reloader  *reloader
	ready     *atomic.Bool
	lifecycle bool
	recorder  *ui.Recorder
	start     time.Time
}

// newMux routes every endpoint: remote write, metrics, profiling, the
// lifecycle endpoints and the web page. The server wraps it with
// --web.config.file's TLS and basic auth.
func newMux(w webRoutes) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/api/v1/write", w.handler)
	mux.Handle("/api/v1/push", w.handler)
	mux.Handle("/metrics", promhttp.HandlerFor(w.reg, promhttp.HandlerOpts{Registry: w.reg}))
	// Profiling, as Prometheus serves it: /debug/pprof/.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/-/healthy", func(rw http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(rw, "rwfix is Healthy.")
	})
	mux.HandleFunc("/-/ready", func(rw http.ResponseWriter, _ *http.Request) {
		if !w.ready.Load() {
			http.Error(rw, "rwfix is not ready.", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(rw, "rwfix is Ready.")
	})
	mux.HandleFunc("/-/reload", func(rw http.ResponseWriter, r *http.Request) {
		if !w.lifecycle {
			http.Error(rw, "Lifecycle API is not enabled (--web.enable-lifecycle).", http.StatusForbidden)
			return
		}
		if r.Method != http.MethodPost && r.Method != http.MethodPut {
			http.Error(rw, "Only POST or PUT requests allowed.", http.StatusMethodNotAllowed)
			return
		}
		if err := w.reloader.reload(); err != nil {
			http.Error(rw, "failed to reload config: "+err.Error(), http.StatusInternalServerError)
		}
	})
	ui.New(ui.Options{
		Gatherer: w.reg, Recorder: w.recorder, Ready: w.ready.Load,
		Reload: w.reloader.status, Config: w.reloader.configYAML, ParseRepair: parseRepair,
		Start: w.start,
	}).Register(mux)
	return mux
}
