// Package series is the contract between rwfix's wire and its repair: what
// package remotewrite offers of a decoded request (a Batch of series, read in
// place and changed through calls), what package relabel's Pipeline
// implements to repair it (Repairer, and Retrying and IdleFlusher when it
// merges), and the values that travel between them (Sample, Emit, Result,
// MergeRun, Origin).
//
// Both packages import this one and neither imports the other, as
// Prometheus' storage/remote and tsdb meet in storage.Appendable: remotewrite
// knows no repair rule, relabel knows no wire format. The package imports
// nothing but labels.Labels, so that it stays the one place where the two
// sides agree; a change here is a change of both sides, checked by the
// compiler (main hands a *relabel.Pipeline to remotewrite as a Repairer).
//
// Files: series.go (the types).
package series
