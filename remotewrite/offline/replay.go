package offline

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/klauspost/compress/s2"

	"github.com/rwfix/rwfix/remotewrite/series"
	"github.com/rwfix/rwfix/remotewrite/wire"
)

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
		for _, ext := range []string{wire.ExtV1, wire.ExtV2} {
			m, _ := filepath.Glob(filepath.Join(p, "*"+ext))
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
		proto, ok := wire.ProtoOfCapture(f)
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
		before, err := wire.Decode(proto, raw)
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
		var after []wire.Series
		for _, o := range outs {
			s, err := wire.Decode(proto, o)
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
			fmt.Fprintf(w, "--- before\n%s--- after\n%s", wire.RenderSeries(before), wire.RenderSeries(after))
		}
	}
	fmt.Fprintf(w, "total: %d series in, %d out: %d with new labels, %d merged into another series or dropped\n",
		total.in, total.out, total.repaired, total.gone)
	return nil
}

func countSeries(s []wire.Series) int {
	n := 0
	for _, x := range s {
		if !x.Labels.IsEmpty() {
			n++
		}
	}
	return n
}
