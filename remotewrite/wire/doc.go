// Package wire holds what rwfix, its sub-commands and its tests all need to
// know of the remote-write protocols beyond decoding: the Content-Types, the
// capture files' names, and the text form of a request (what `rwfix replay
// --full` prints and the golden files hold). It imports nothing of rwfix, so
// that package remotewrite, package offline and the test helpers (rwtest)
// share one copy.
//
// Files: wire.go (Content-Types, capture file extensions), text.go (Decode,
// RenderSeries, FormatValue).
package wire
