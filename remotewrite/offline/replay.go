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
	"github.com/prometheus/prometheus/model/labels"

	"github.com/rwfix/rwfix/remotewrite"
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
// file, series in and out, with new labels, merged into another series,
// held (the sources of a merged output still learning them: their samples
// go out later, merged) and dropped by a rule; with full, the requests
// before and after.
func Replay(w io.Writer, paths []string, rep remotewrite.Repairer, full bool) error {
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
		changes := col.take()
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
			fmt.Fprintf(w, "--- before\n%s--- after\n%s", renderSeries(before), renderSeries(after))
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
func (c *replayCounts) count(changes []remotewrite.Change, rep remotewrite.Repairer) {
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
