// Package remotewrite is rwfix's wire: it receives Prometheus remote-write
// 1.0 and 2.0 requests, decodes them, hands their series to a Repairer,
// re-encodes what changed and forwards the result to every upstream, then
// answers the sender with a status that tells it the truth (2xx only when
// every upstream accepted; 5xx or 429 when a retry can succeed; 4xx when the
// input itself is bad).
//
// It knows nothing about which labels are repaired: that is the Repairer's
// job, an interface defined here and implemented by package relabel.
//
// Files by concern: codec.go (decode, encode, RW2 -> RW1 conversion),
// repair.go (applying a Repairer to a batch, the collision guard),
// handler.go (the HTTP receiver), client.go (the upstream client and the
// mapping of upstream answers), metrics.go.
package remotewrite
