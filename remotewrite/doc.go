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
// Files by concern, each with its tests in <file>_test.go:
//   - scan.go, splice.go: the in-place index of a request and its Batch
//     (labels read in place; changed series spliced back in);
//     validate.go: the request's validation on that index (rwfix's limits,
//     Prometheus' receiver's verdicts); limits.go: the limits and reasons.
//   - codec.go: compression, RW 2.0 -> 1.0 for an upstream that speaks only
//     1.0, merged samples re-sent in a request of their own.
//   - repair.go: the calls to the Repairer; the reference path, the tests'
//     oracle over the generated structs, is repair_ref_test.go.
//   - handler.go: the HTTP receiver; observe.go: what it shows the status
//     page; retries.go: re-sent merged samples, a refused request bisected
//     until each sample is settled; flush.go: merged samples of a tenant
//     whose sender stopped, sent on rwfix's own.
//   - client.go: the upstream client and the mapping of upstream answers;
//     metrics.go.
//
// Sub-packages: series (the contract with relabel), wire (Content-Types,
// capture files, a request's text form), offline (test rules, replay, the
// playground), ui (the web page), rwtest (the tests' helpers).
package remotewrite
