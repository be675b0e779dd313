// Package remotewrite is rwfix's wire: it receives Prometheus remote-write
// 1.0 and 2.0 requests, decodes them, hands them to a Repairer, re-encodes
// what changed and forwards the result to every upstream, then answers the
// sender with a status that tells it the truth (2xx only when every upstream
// accepted; 5xx or 429 when a retry can succeed; 4xx when the input itself is
// bad).
//
// It knows nothing about which labels are repaired or how collisions merge:
// that is the Repairer's job (package relabel's Pipeline), called through an
// interface defined here. The Repairer sees a request as a Batch, which this
// package implements over its in-place index (scanned, the fast path) and
// over the generated structs (the reference path).
//
// Files by concern:
//   - scan.go: the in-place index of a decompressed request (offsets of
//     series, labels, symbols; no per-series allocation), the fast path.
//   - splice.go: re-encoding a changed request by splicing: unchanged series
//     copied as they came, changed ones re-encoded, RW 2.0 symbols appended.
//   - codec.go: generated-struct decode and encode (the reference path), RW
//     2.0 -> 1.0 conversion, and the request of merged samples re-sent on
//     their own.
//   - repair.go: the Repairer and Batch interfaces the relay calls, and the
//     reference path's Batch.
//   - limits.go: rwfix's own limits and the validation of a request against
//     them (too many series or labels, names or values too long, UTF-8).
//   - handler.go: the HTTP receiver: content negotiation, decode, repair,
//     forward to every upstream, one answer to the sender.
//   - client.go: the upstream client and the mapping of upstream answers
//     (502, 504, 429 with Retry-After, the RW 2.0 -> 1.0 fallback).
//   - retries.go: re-sent merged samples; a refused request bisected until
//     each sample is settled.
//   - flush.go: merged samples of a tenant whose sender stopped, sent on
//     rwfix's own.
//   - observe.go: the Observer the handler reports to, off the hot path
//     (changed series, refused requests, upstream answers), for the web page.
//   - metrics.go: the rwfix_* metrics of the wire.
//
// Beside it: offline/ runs the pipeline without traffic (rule tests, replay,
// the playground's engine), ui/ is the web page, rwtest/ holds what the tests
// share.
package remotewrite
