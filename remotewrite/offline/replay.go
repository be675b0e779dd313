package offline

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/rwfix/rwfix/remotewrite"
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
// file, series in and out, with new labels, merged into another series,
// held by the merge (their samples go out later, merged: while an output
// learns its sources, or waits for them) and dropped by a rule; with full,
// the requests before and after.
func Replay(w io.Writer, paths []string, rep series.Repairer, full bool) error {
	files, err := captures(paths)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no .rw1 or .rw2 files in %v", paths)
	}
	col := &collector{}
	p, err := newPipeline(rep, remotewrite.WithObserver(col, 0))
	if err != nil {
		return err
	}
	defer p.rec.close()
	var total replayCounts
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
		changes := col.take()
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
		c := replayCounts{in: countSeries(before), out: countSeries(after)}
		inSet := map[string]bool{}
		for _, s := range before {
			inSet[s.Labels.String()] = true
		}
		for _, s := range after {
			if !s.Labels.IsEmpty() && !inSet[s.Labels.String()] {
				c.repaired++
			}
		}
		c.count(changes, rep)
		total.add(c)
		fmt.Fprintf(w, "%s: %s\n", f, c)
		if full {
			fmt.Fprintf(w, "--- before\n%s--- after\n%s", wire.RenderSeries(before), wire.RenderSeries(after))
		}
	}
	fmt.Fprintf(w, "total: %s\n", total)
	return nil
}

// replayCounts is what the pipeline made of the series of a request.
type replayCounts struct {
	in, out  int
	repaired int // output series with labels that no input series had
	merged   int // summed into another series of the same request
	held     int // sources of a merged output that holds their samples: sent later
	dropped  int // dropped by a rule
	sent     int // merged outputs' held samples, sent with this request
}

// count reads the handler's report of one request.
func (c *replayCounts) count(changes []remotewrite.Change, rep series.Repairer) {
	keeps, _ := rep.(interface {
		Repair(labels.Labels) (labels.Labels, bool, bool)
	})
	for _, ch := range changes {
		switch ch.Action {
		case remotewrite.ChangeMerged:
			c.merged += max(len(ch.Sources)-1, 0)
		case remotewrite.ChangeEmitted:
			c.sent++
		case remotewrite.ChangeRemoved:
			for _, s := range ch.Sources {
				if keeps != nil {
					if _, _, keep := keeps.Repair(s.Labels); keep {
						c.held++ // taken out, kept: a merge source whose output is held
						continue
					}
				}
				c.dropped++
			}
		}
	}
}

func (c *replayCounts) add(o replayCounts) {
	c.in, c.out, c.repaired = c.in+o.in, c.out+o.out, c.repaired+o.repaired
	c.merged, c.held, c.dropped, c.sent = c.merged+o.merged, c.held+o.held, c.dropped+o.dropped, c.sent+o.sent
}

func (c replayCounts) String() string {
	return fmt.Sprintf("%d series in, %d out: %d with new labels, %d merged into another series, %d held by the merge (sent later, merged), %d dropped by a rule, %d held merged series sent",
		c.in, c.out, c.repaired, c.merged, c.held, c.dropped, c.sent)
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
