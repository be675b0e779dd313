// Package remotewrite is rwfix's wire: it receives Prometheus remote-write
// 1.0 and 2.0 requests, decodes them, hands them to a Repairer, re-encodes
// what changed and forwards the result to every upstream, then answers the
// sender with a status that tells it the truth (2xx only when every upstream
// accepted; 5xx or 429 when a retry can succeed; 4xx when the input itself is
// bad).
//
// It knows nothing about which labels are repaired or how collisions merge:
// that is the Repairer's job (package relabel's Pipeline). The two meet only
// in package series (remotewrite/series), the contract both import: this
// package offers a request as a series.Batch, which it implements over its
// in-place index, and calls a series.Repairer.
//
// Files by concern: scan.go and splice.go (the in-place index, splicing
// changed series back in), codec.go (generated-struct decode and encode, RW 2.0
// -> 1.0, merged samples re-sent in a request of their own), repair.go (the
// calls to the Repairer; the reference path, the tests' oracle, is in
// repair_ref_test.go), limits.go,
// handler.go (the HTTP receiver), retries.go (re-sent merged samples, a
// refused request bisected until each sample is settled), flush.go (merged
// samples of a tenant whose sender stopped, sent on rwfix's own), client.go
// (the upstream client and the mapping of upstream answers), metrics.go.
package remotewrite
