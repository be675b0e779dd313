package offline

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/s2"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"

	"github.com/rwfix/rwfix/remotewrite"
	"github.com/rwfix/rwfix/remotewrite/series"
)

// Captured bodies are stored as sent on the wire (snappy-compressed); the
// extension names the protocol: .rw1 for prometheus.WriteRequest, .rw2 for
// io.prometheus.write.v2.Request. testdata/fixtures holds examples, and
// `rwfix serve --capture.dir` records live traffic in this format.

// ProtoOf returns the protocol a capture file holds, by its extension.
func ProtoOf(path string) (remoteapi.WriteMessageType, bool) {
	switch filepath.Ext(path) {
	case ".rw1":
		return remotewrite.ProtoV1, true
	case ".rw2":
		return remotewrite.ProtoV2, true
	}
	return "", false
}

// captures expands directories into their .rw1/.rw2 files, sorted.
func captures(paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		for _, ext := range []string{"*.rw1", "*.rw2"} {
			m, _ := filepath.Glob(filepath.Join(p, ext))
			files = append(files, m...)
		}
	}
	sort.Strings(files)
	return files, nil
}

// Replay sends captured bodies, in order, through one pipeline (so merges
// across requests show as in production) and writes what it changed: per
// file, series in and out, repaired, merged away and dropped; with full, the
// requests before and after.
func Replay(w io.Writer, paths []string, rep series.Repairer, full bool) error {
	files, err := captures(paths)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no .rw1 or .rw2 files in %v", paths)
	}
	p, err := newPipeline(rep)
	if err != nil {
		return err
	}
	defer p.rec.close()
	var total struct{ in, out, repaired, gone int }
	for fi, f := range files {
		proto, ok := ProtoOf(f)
		if !ok {
			return fmt.Errorf("%s: not a .rw1 or .rw2 capture", f)
		}
		body, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		raw, err := s2.Decode(nil, body)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		before, err := Decode(proto, raw)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		// The merge's clock follows the captured samples' time.
		for _, s := range before {
			for _, smp := range s.Samples {
				p.at(time.UnixMilli(smp.Timestamp))
			}
		}
		code, msg, outs, err := p.send(proto, body)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if fi == len(files)-1 {
			// What the merge still holds goes out once its wait is over.
			more, err := p.drain(proto)
			if err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			outs = append(outs, more...)
		}
		if code/100 != 2 {
			fmt.Fprintf(w, "%s: rwfix would answer %d: %s\n", f, code, msg)
			continue
		}
		var after []Series
		for _, o := range outs {
			s, err := Decode(proto, o)
			if err != nil {
				return err
			}
			after = append(after, s...)
		}
		in, out := countSeries(before), countSeries(after)
		inSet := map[string]bool{}
		for _, s := range before {
			inSet[s.Labels.String()] = true
		}
		repaired := 0
		for _, s := range after {
			if !s.Labels.IsEmpty() && !inSet[s.Labels.String()] {
				repaired++
			}
		}
		gone := in - out
		total.in, total.out, total.repaired, total.gone = total.in+in, total.out+out, total.repaired+repaired, total.gone+gone
		fmt.Fprintf(w, "%s: %d series in, %d out: %d with new labels, %d merged into another series or dropped\n", f, in, out, repaired, gone)
		if full {
			fmt.Fprintf(w, "--- before\n%s--- after\n%s", renderSeries(before), renderSeries(after))
		}
	}
	fmt.Fprintf(w, "total: %d series in, %d out: %d with new labels, %d merged into another series or dropped\n",
		total.in, total.out, total.repaired, total.gone)
	return nil
}

func countSeries(s []Series) int {
	n := 0
	for _, x := range s {
		if !x.Labels.IsEmpty() {
			n++
		}
	}
	return n
}

func renderSeries(series []Series) string {
	var b strings.Builder
	for _, s := range series {
		if s.Labels.IsEmpty() {
			b.WriteString(s.Other + "\n")
			continue
		}
		b.WriteString(s.Labels.String())
		for _, smp := range s.Samples {
			fmt.Fprintf(&b, " s=%d:%s", smp.Timestamp, FormatValue(smp.Value))
		}
		b.WriteString(s.Other + "\n")
	}
	return b.String()
}
