// Package ui is rwfix's own web page: the live status (GET /), the running
// configuration (GET /config), and the repair playground (GET /playground,
// POST /api/v1/repair) that runs pasted series through the relay's pipeline
// (package offline) in a private state. Templates and assets are embedded;
// the page's script is plain JavaScript (docs/web.md).
//
// Files by concern:
//   - ui.go: the page's options, routes and embedded templates and assets
//     (templates/: layout, status, config, playground; static/: the
//     stylesheet and playground.js).
//   - status.go: the status page, rendered on the server from rwfix's
//     metrics and the recorder.
//   - recorder.go: the Recorder, the handler's observer: bounded rings of
//     changed series, reject messages and upstream answers.
//   - api.go: the playground's JSON API and its limits.
//   - trace.go: what each rule did to a series' labels, step by step.
package ui
