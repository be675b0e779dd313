package offline

import (
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v2"

	"github.com/rwfix/rwfix/remotewrite"
	"github.com/rwfix/rwfix/remotewrite/series"
)

// The playground's engine: series pasted as text run through the same
// handler and pipeline as `rwfix test rules`, in a private state, with what
// the rules did to each request reported by the handler's Observer.

// ErrBadInput is wrapped by every error about the pasted text.
var ErrBadInput = errors.New("bad input")

// ErrTooLarge is wrapped by the errors of input beyond the limits.
var ErrTooLarge = errors.New("too large")

// Input is one pasted series: its labels, its values by step (nil: no
// sample) and the line it came from.
type Input struct {
	Labels labels.Labels
	Values []*float64
	Line   int
}

// SeriesString prints a series as PromQL and promtool write it:
// name{label="value", ...}.
func SeriesString(ls labels.Labels) string {
	name := ls.Get(model.MetricNameLabel)
	if name == "" || !model.LegacyValidation.IsValidMetricName(name) {
		return ls.String()
	}
	rest := labels.NewBuilder(ls).Del(model.MetricNameLabel).Labels()
	if rest.IsEmpty() {
		return name
	}
	return name + rest.String()
}

// Spec is the series in promtool's notation, as a test file writes it.
func (in Input) Spec() (series, values string) {
	m := map[int64]float64{}
	for i, v := range in.Values {
		if v != nil {
			m[int64(i)] = *v
		}
	}
	return SeriesString(in.Labels), fmtSeq(m, len(in.Values))
}

// ParseInput reads series in promtool's notation (`metric{l="v"} 1 2 3`,
// `0+1x3`, `_`, `stale`), one per line, or a Prometheus text exposition (one
// sample per series), as pasted. Blank lines and, in promtool notation,
// lines starting with # are skipped. At most maxSeries series of at most
// maxSteps values each.
func ParseInput(text string, maxSeries, maxSteps int) ([]Input, error) {
	if isExposition(text) {
		return parseExposition(text, maxSeries)
	}
	in, err := parsePromtool(text, maxSeries, maxSteps)
	if err != nil && !errors.Is(err, ErrTooLarge) {
		if exp, eerr := parseExposition(text, maxSeries); eerr == nil {
			return exp, nil
		}
	}
	return in, err
}

func isExposition(text string) bool {
	for line := range strings.Lines(text) {
		if l := strings.TrimSpace(line); strings.HasPrefix(l, "# TYPE ") || strings.HasPrefix(l, "# HELP ") {
			return true
		}
	}
	return false
}

// expansion is promtool's `a+bxN`: N more values.
var expansion = regexp.MustCompile(`x(\d+)`)

// seriesEnd returns where the series descriptor of a line ends: after its
// closing brace (outside quotes), or at the first blank.
func seriesEnd(line string) int {
	if i := strings.IndexAny(line, " \t{"); i < 0 || line[i] != '{' {
		if i < 0 {
			return len(line)
		}
		return i
	}
	inQuote, esc := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case esc:
			esc = false
		case c == '\\':
			esc = true
		case c == '"':
			inQuote = !inQuote
		case c == '}' && !inQuote:
			return i + 1
		}
	}
	return len(line)
}

// countSteps counts the values a promtool values string expands to,
// without expanding it (capped: an absurd count is just too many).
func countSteps(values string) int {
	n := 0
	for _, f := range strings.Fields(values) {
		n++
		for _, m := range expansion.FindAllStringSubmatch(f, -1) {
			k, err := strconv.Atoi(m[1])
			if err != nil || k > math.MaxInt32 {
				k = math.MaxInt32
			}
			n = min(n+k, math.MaxInt32)
		}
	}
	return n
}

func parsePromtool(text string, maxSeries, maxSteps int) ([]Input, error) {
	p := parser.NewParser(parser.Options{})
	var out []Input
	seen := map[string]int{}
	lineNo := 0
	for line := range strings.Lines(text) {
		lineNo++
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if len(out) == maxSeries {
			return nil, fmt.Errorf("%w: line %d: more than %d series", ErrTooLarge, lineNo, maxSeries)
		}
		end := seriesEnd(line)
		n := countSteps(line[end:])
		if n > maxSteps {
			return nil, fmt.Errorf("%w: line %d: the values expand to more than %d steps", ErrTooLarge, lineNo, maxSteps)
		}
		if n == 0 {
			return nil, fmt.Errorf("%w: line %d: %q has no values (promtool notation: metric{label=\"value\"} 1 2 3)", ErrBadInput, lineNo, line)
		}
		ls, vals, err := p.ParseSeriesDesc(line)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrBadInput, lineNo, err)
		}
		in := Input{Labels: ls, Line: lineNo}
		for _, v := range vals {
			if v.Histogram != nil {
				return nil, fmt.Errorf("%w: line %d: native histograms are not supported", ErrBadInput, lineNo)
			}
			if v.Omitted {
				in.Values = append(in.Values, nil)
				continue
			}
			f := v.Value
			in.Values = append(in.Values, &f)
		}
		if err := addInput(&out, seen, in); err != nil {
			return nil, err
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no series", ErrBadInput)
	}
	return out, nil
}

// addInput appends in, unless its series came already.
func addInput(out *[]Input, seen map[string]int, in Input) error {
	k := in.Labels.String()
	if first, ok := seen[k]; ok {
		return fmt.Errorf("%w: line %d: series %s repeats line %d; give each series once", ErrBadInput, in.Line, k, first)
	}
	seen[k] = in.Line
	*out = append(*out, in)
	return nil
}

// parseExposition reads a text exposition line by line (each line of the
// format stands alone), so that an error names its line.
func parseExposition(text string, maxSeries int) ([]Input, error) {
	var out []Input
	seen := map[string]int{}
	st := labels.NewSymbolTable()
	lineNo := 0
	for line := range strings.Lines(text) {
		lineNo++
		if strings.TrimSpace(line) == "" {
			continue
		}
		if !strings.HasSuffix(line, "\n") {
			line += "\n"
		}
		p := textparse.NewPromParser([]byte(line), st, false)
		for {
			et, err := p.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: %w", ErrBadInput, lineNo, err)
			}
			if et != textparse.EntrySeries {
				continue
			}
			if len(out) == maxSeries {
				return nil, fmt.Errorf("%w: line %d: more than %d series", ErrTooLarge, lineNo, maxSeries)
			}
			_, _, v := p.Series()
			var ls labels.Labels
			p.Labels(&ls)
			if err := addInput(&out, seen, Input{Labels: ls, Values: []*float64{&v}, Line: lineNo}); err != nil {
				return nil, err
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no series", ErrBadInput)
	}
	return out, nil
}

// Output is one series that reached the upstream, its values by step.
type Output struct {
	Labels labels.Labels
	Values map[int64]float64
}

// Spec is the series in promtool's notation over steps.
func (o Output) Spec(steps int) (series, values string) {
	return SeriesString(o.Labels), fmtSeq(o.Values, steps)
}

// PlayResult is what a playground run made of its input.
type PlayResult struct {
	Steps   int
	Output  []Output               // sorted by labels
	Changes [][]remotewrite.Change // by step; the last step's include the drain
}

// collector keeps what the handler reports.
type collector struct {
	mu      sync.Mutex
	changes []remotewrite.Change
	rejects []string
}

func (c *collector) ObserveChanges(ch []remotewrite.Change) {
	c.mu.Lock()
	c.changes = append(c.changes, ch...)
	c.mu.Unlock()
}

func (c *collector) ObserveReject(reason, msg string) {
	c.mu.Lock()
	c.rejects = append(c.rejects, reason+": "+msg)
	c.mu.Unlock()
}

func (c *collector) ObserveUpstream(remotewrite.UpstreamAnswer) {}

func (c *collector) take() []remotewrite.Change {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := c.changes
	c.changes = nil
	return ch
}

// Play sends the input through rep (a fresh pipeline: its merge state is
// private) one step per request, interval apart, into an upstream of its
// own, and returns what came out and what the rules did at each step.
func Play(rep series.Repairer, in []Input, interval time.Duration) (*PlayResult, error) {
	col := &collector{}
	p, err := newPipeline(rep, remotewrite.WithObserver(col, 0))
	if err != nil {
		return nil, err
	}
	defer p.rec.close()
	ps := make([]parsed, len(in))
	for i, s := range in {
		ps[i] = parsed{labels: s.Labels, values: s.Values}
	}
	res := &PlayResult{}
	got, gotLabels, steps, err := p.runSteps(ps, interval, func(int) {
		res.Changes = append(res.Changes, col.take())
	})
	if err != nil {
		return nil, err
	}
	res.Steps = steps
	keys := make([]string, 0, len(got))
	for k := range got {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		res.Output = append(res.Output, Output{Labels: gotLabels[k], Values: got[k]})
	}
	return res, nil
}

// TestFile writes a `rwfix test rules` file: the input series, and the
// output as the expected series. configFile ("" for the defaults) is
// relative to the test file.
func TestFile(name, configFile string, interval time.Duration, in []Input, out []Output, steps int) ([]byte, error) {
	tc := ruleTest{Name: name}
	for _, s := range in {
		series, values := s.Spec()
		tc.Input = append(tc.Input, seriesSpec{Series: series, Values: values})
	}
	for _, o := range out {
		series, values := o.Spec(steps)
		tc.Expected = append(tc.Expected, seriesSpec{Series: series, Values: values})
	}
	return yaml.Marshal(ruleTestFile{ConfigFile: configFile, Interval: model.Duration(interval), Tests: []ruleTest{tc}})
}
