// Package rwtest holds what rwfix's tests share. It imports no rwfix package
// but remotewrite/wire (a leaf), so that remotewrite's own tests can use it.
//
// Files by concern:
//   - workload.go: LiteLLM-like remote-write workloads for the benchmarks and
//     the load test (~15 labels per series including a 64-hex
//     hashed_api_key, one sample per series per scrape, batches as Prometheus
//     sends them).
//   - upstream.go: a recording remote-write upstream (NewRecordingUpstream)
//     with scripted answers (codes, Retry-After, delays, RW 2.0 refused).
//   - head.go: the recording upstream's model of a Prometheus head: the
//     verdicts a real receiver gives (out of order, duplicates, conflicts).
//   - render.go: MustRender, a request in its text form (wire's renderer,
//     the one `rwfix replay --full` and the golden files use).
//   - example.go: small requests of each protocol with every kind of content.
//   - proto.go: protocols and the .rw1/.rw2 capture files (ReadCapture);
//     Content-Types and file extensions are package wire's.
//   - clock.go: a settable clock, and reading a counter from a registry.
package rwtest
