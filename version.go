package main

import (
	"runtime/debug"
	"strings"

	"github.com/prometheus/common/version"
)

// A release build sets the version with -ldflags, as Prometheus' own builds
// do (see README, "Version"):
//
//	go build -ldflags "-X github.com/prometheus/common/version.Version=1.2.3 \
//	  -X github.com/prometheus/common/version.Revision=$(git rev-parse HEAD) \
//	  -X github.com/prometheus/common/version.Branch=$(git rev-parse --abbrev-ref HEAD) \
//	  -X github.com/prometheus/common/version.BuildDate=$(date -u +%Y%m%d-%H:%M:%S)" .
//
// A plain `go build` or `go install` leaves them empty; then Go's build info
// fills them: the module version (go install module@v1.2.3 gives 1.2.3; a
// build in a git checkout, Go's pseudo-version of the commit, +dirty when the
// tree has changes), the commit time as the build date. The revision comes
// from vcs.revision (prometheus/common computes it, "-modified" when dirty).
func init() {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	if version.Version == "" {
		v := bi.Main.Version
		if v == "" || v == "(devel)" {
			v = "devel"
		}
		version.Version = strings.TrimPrefix(v, "v")
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.time" && version.BuildDate == "" {
			version.BuildDate = s.Value
		}
	}
}
