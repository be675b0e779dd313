// Package offline runs rwfix's pipeline without live traffic: promtool-style
// rule tests (`rwfix test rules`), the replay of captured remote-write bodies
// (`rwfix replay`) and the web page's playground. All of them drive the same
// handler that serves traffic (remotewrite.Handler, merge included), into an
// in-process recording upstream on 127.0.0.1, in a state of their own.
//
// Files by concern:
//   - offline.go: the shared engine — running requests through a handler
//     into the recording upstream (decoding a request into series and its
//     text form are package wire's).
//   - ruletest.go: `rwfix test rules`: test files in promtool's notation, the
//     merge clock on sample time, the report of missing, unexpected and
//     differing series.
//   - replay.go: `rwfix replay`: .rw1/.rw2 files or directories of them, in
//     order through one pipeline; per-file summaries, or every request before
//     and after.
//   - playground.go: the playground's engine: pasted series (promtool
//     notation or a text exposition) run step by step, with each input's
//     output, action and collision group.
package offline
