// Command rwfix is a Prometheus remote-write relay that repairs series on the
// way to the real TSDB: it decodes remote write 1.0 and 2.0 requests,
// rewrites LiteLLM's status_code="None" to "500" (and whatever the user's
// relabel_configs say), merges series that collide after the rewrite into an
// exact counter, and forwards the result to every upstream. README.md is the
// user's guide, docs/ the reference (docs/command-line.md: the flags).
//
// This package is the command: flags, wiring and the server. The wire lives
// in package remotewrite, the repairs and the merge in package relabel (the
// two meet only in remotewrite/series, their contract), the web page in
// remotewrite/ui, the offline engine in remotewrite/offline.
//
// Files by concern:
//   - main.go: the serve flags, the wiring, the HTTP server, signals and
//     graceful shutdown, the Go runtime's settings (GOGC, GOMEMLIMIT from the
//     cgroup), the version from Go's build information; opens the merge log in
//     --storage.path and closes it on shutdown.
//   - config.go: the configuration file (repair settings at the top level,
//     upstreams, limits), its loading, validation and redacted printing.
//   - reload.go: loading and reloading it (SIGHUP, POST /-/reload) into the
//     running handler, the merge state kept across reloads.
//   - web.go: the HTTP routes: remote write, metrics, pprof, the lifecycle
//     endpoints and the web page.
//   - commands.go: the sub-commands `check config`, `test rules`, `replay`.
//   - documentation.go: the hidden --write-documentation flag, which prints
//     docs/command-line.md from the kingpin model.
//
// The root package's tests run the rwfix binary against real Prometheus,
// VictoriaMetrics, vmagent and Chromium, and hold the fault simulation
// (sim_*_test.go): docs/development.md.
package main
