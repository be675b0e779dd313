// Package relabel decides what happens to a series on its way through rwfix:
// built-in repair presets (the LiteLLM "None" status code fix), then the
// user's relabel_configs in exactly Prometheus' syntax and semantics.
//
// It knows nothing about HTTP or the remote-write wire format: it works on
// labels.Labels. The remotewrite package calls it through a small interface of
// its own (remotewrite.Repairer), which *Pipeline satisfies.
//
// The hot path is Pipeline.MayChange: it tells, from the metric name alone
// and without allocating, whether a series can be touched at all. With only
// presets configured, every series outside the handful of LiteLLM metric
// names is forwarded without ever being turned into labels.Labels.
package relabel
