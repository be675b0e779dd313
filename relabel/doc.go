// Package relabel decides what happens to the series of a request on its way
// through rwfix: built-in repair presets (the LiteLLM "None" status code fix),
// then the user's relabel_configs in exactly Prometheus' syntax and
// semantics, then what collisions mean.
//
// It knows nothing about HTTP or the remote-write wire format. It meets
// package remotewrite only in package series, the contract both import:
// remotewrite hands it a decoded request as a series.Batch (labels read in
// place, samples, set labels, set samples, append, drop) and calls
// Pipeline.Apply as a series.Repairer. Sample and Emit here are the
// contract's types (aliases of series.Sample and series.Emit), under the
// names the merge state has always used.
//
// Files by concern:
//   - config.go, preset.go, pipeline.go: the configuration, the presets, the
//     compiled Pipeline and its per-rule counters. The hot path is
//     Pipeline.MayChange: from the metric name and one label, read in place
//     and without allocating, it proves most series untouchable, so that they
//     are forwarded without ever being turned into labels.Labels.
//   - apply.go: Apply, the request-level entry — which series change, the
//     decision cache's use, the fences' effect on raw samples, the dropped
//     set; it implements series.Repairer (the contract with remotewrite).
//   - group.go: the merge grouping — a request's merge sources grouped by
//     output, handed to the merge transaction, and its emits written back.
//   - guard.go: the collision guard, which undoes rewrites that would land on
//     one another or on a series forwarded as it came.
//   - hash.go: label-set hashing from a series' pairs, read in place.
//   - cache.go: the decision cache — the rules' verdict per series, keyed by
//     a 128-bit hash of its labels, so that a series seen again is neither
//     built into labels nor relabeled again. Bounded in bytes, in one budget
//     with the merge state (max_series × 1,152 B), evicting by CLOCK.
//   - memsize.go: heap sizes of allocations, map entries and label sets, for
//     that budget; mergemem.go: what the cache needs of the merge state for
//     it (the state's heap estimate, its removals, its copies of labels).
//   - shard.go: the exact counter merge's state machine (see shard), its
//     invariants and its one mechanism, the per-output frontier.
//   - merger.go: Merger, the merge state requests use: 16 shards by the hash
//     of an output's labels, each with its own lock, sharing ids, the output
//     count, the log and the metrics.
//   - mergelog.go: the merge state's durable log in the data directory.
//   - idle.go: the partitions (tenants) whose held samples no request of
//     theirs will carry (their sender stopped), and their flush; how each
//     partition's requests come (its origin), kept in the log for a flush
//     after a restart.
//   - retire.go: what a reload does to the merge state — outputs it takes
//     from the merge retired and fenced, outputs whose partition changed
//     orphaned and adopted; fences.
//   - created.go: the sources' creation times from their _created series,
//     which tell a series created again from the same one going on.
//
// The merge's contract for users is docs/collisions.md; its proof is the
// tests here and the fault simulation (sim_*_test.go in the root package).
package relabel
