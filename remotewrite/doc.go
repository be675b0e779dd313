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
//   - scan.go: the in-place index of a decompressed request (offsets of
//     series, labels, symbols; no per-series allocation), the fast path.
//   - splice.go: the index's series.Batch, and re-encoding a changed request
//     by splicing: unchanged series copied as they came, dropped and changed
//     ones blanked in place (an unknown field receivers skip; see blankTag)
//     or cut out, changed ones re-encoded, RW 2.0 symbols appended. When
//     every change is blanked, the handler's decoded buffer itself is
//     blanked and only the tail after it is encoded (encodeForward).
//   - symtable.go: the table that finds an RW 2.0 symbol's reference for
//     the series encode writes with labels of their own.
//   - validate.go: the validation of a request on that index: rwfix's own
//     limits (too many series or labels, names or values too long, UTF-8),
//     then the verdict Prometheus' receiver would give each series.
//   - limits.go: the limits, their defaults and the reasons of refusals.
//   - snappysplice.go: compressing a spliced request by reusing the
//     sender's compressed elements that decode to bytes it holds unchanged
//     (compressInPlace when nothing moved, compressSpliced's walk when runs
//     moved; every element verified; compress otherwise).
//   - codec.go: compression, generated-struct decode, RW 2.0 -> 1.0
//     conversion, and the request of merged samples re-sent on their own.
//   - repair.go: the calls to the Repairer. The reference path, a
//     series.Batch over the generated structs, is the tests' oracle
//     (repair_ref_test.go), not part of the binary.
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
// Beside it: series/ is the contract with package relabel (Batch, Repairer
// and what travels between them), wire/ what every side needs of the
// protocols (Content-Types, capture file names, a request's text form),
// offline/ runs the pipeline without traffic (rule tests, replay, the
// playground's engine), ui/ is the web page, rwtest/ holds what the tests
// share.
package remotewrite
