package offline

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v2"

	"github.com/rwfix/rwfix/remotewrite"
	"github.com/rwfix/rwfix/remotewrite/series"
	"github.com/rwfix/rwfix/remotewrite/wire"
)

// ruleTestFile is a `rwfix test rules` file. Series use promtool's notation
// (`metric{label="value"} 1 2 3`, `1+1x3`, `_` for no sample, `stale`).
type ruleTestFile struct {
	// ConfigFile is the rwfix configuration under test, relative to the
	// test file; empty for the defaults. The merge warm-up is off in tests.
	ConfigFile string         `yaml:"config_file,omitempty"`
	Interval   model.Duration `yaml:"interval,omitempty"` // between samples; default 15s
	Tests      []ruleTest     `yaml:"tests"`
}

type ruleTest struct {
	Name     string       `yaml:"name"`
	Input    []seriesSpec `yaml:"input_series"`
	Expected []seriesSpec `yaml:"expected_series"`
}

type seriesSpec struct {
	Series string `yaml:"series"`
	Values string `yaml:"values"`
}

// RunRuleTests runs test files and writes promtool-like output to w, file
// after file: a file that is not a test file (an rwfix configuration given
// by a glob, say) is skipped with a note, and one that cannot be run is
// reported, and the next files run all the same. It returns how many tests
// failed, and an error naming the files that could not be run.
func RunRuleTests(w io.Writer, files []string, build BuildFunc) (failed int, err error) {
	var broken []string
	for _, f := range files {
		fmt.Fprintf(w, "Unit Testing: %s\n", f)
		n, err := runFile(w, f, build)
		failed += n
		switch {
		case errors.Is(err, errNotATest):
			fmt.Fprintf(w, "  SKIPPED: %v\n", err)
		case err != nil:
			fmt.Fprintf(w, "  FAILED: %v\n", err)
			broken = append(broken, f)
		}
	}
	if len(broken) > 0 {
		return failed, fmt.Errorf("%d of %d files could not be run: %s", len(broken), len(files), strings.Join(broken, ", "))
	}
	return failed, nil
}

// configKeys are top-level keys of an rwfix configuration file.
var configKeys = []string{"presets", "relabel_configs", "collision", "upstreams", "limits"}

func runFile(w io.Writer, file string, build BuildFunc) (int, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	var top map[string]any
	if err := yaml.Unmarshal(data, &top); err != nil {
		return 0, HumanError(err)
	}
	if _, ok := top["tests"]; !ok {
		for _, k := range configKeys {
			if _, ok := top[k]; ok {
				return 0, fmt.Errorf("%w: it has no tests: key and looks like an rwfix configuration (%s:); check one with `rwfix check config`", errNotATest, k)
			}
		}
		return 0, fmt.Errorf("%w: it has no tests: key (see testdata/rules/ for the format)", errNotATest)
	}
	var tf ruleTestFile
	if err := yaml.UnmarshalStrict(data, &tf); err != nil {
		return 0, HumanError(err)
	}
	if tf.Interval == 0 {
		tf.Interval = model.Duration(15 * time.Second)
	}
	cfg := tf.ConfigFile
	if cfg != "" && !filepath.IsAbs(cfg) {
		cfg = filepath.Join(filepath.Dir(file), cfg)
	}
	failed := 0
	for _, tc := range tf.Tests {
		// A fresh pipeline per test: merge state does not leak between tests.
		rep, err := build(cfg)
		if err != nil && cfg != "" {
			return failed, fmt.Errorf("config_file %s: %w", tf.ConfigFile, err)
		}
		if err != nil {
			return failed, err
		}
		diff, err := runTest(rep, tc, time.Duration(tf.Interval))
		if err != nil {
			return failed, fmt.Errorf("test %q: %w", tc.Name, err)
		}
		if diff != "" {
			failed++
			fmt.Fprintf(w, "  FAILED: %s\n%s", tc.Name, diff)
		} else {
			fmt.Fprintf(w, "  SUCCESS: %s\n", tc.Name)
		}
	}
	return failed, nil
}

// parsed is a series and its values, one per step (nil: no sample).
type parsed struct {
	labels labels.Labels
	values []*float64
}

func parseSpecs(specs []seriesSpec) ([]parsed, error) {
	p := parser.NewParser(parser.Options{})
	var out []parsed
	for _, s := range specs {
		ls, vals, err := p.ParseSeriesDesc(s.Series + " " + s.Values)
		if err != nil {
			return nil, fmt.Errorf("series %q values %q: %w", s.Series, s.Values, err)
		}
		ps := parsed{labels: ls}
		for _, v := range vals {
			if v.Omitted {
				ps.values = append(ps.values, nil)
				continue
			}
			if v.Histogram != nil {
				return nil, fmt.Errorf("series %q: native histograms are not supported in rule tests", s.Series)
			}
			f := v.Value
			ps.values = append(ps.values, &f)
		}
		out = append(out, ps)
	}
	return out, nil
}

// runTest sends one RW 1.0 request per step, each with every input series'
// sample of that step, and compares what reached the upstream with the
// expected series. It returns a diff, empty when they match.
func runTest(rep series.Repairer, tc ruleTest, interval time.Duration) (string, error) {
	in, err := parseSpecs(tc.Input)
	if err != nil {
		return "", err
	}
	want, err := parseSpecs(tc.Expected)
	if err != nil {
		return "", err
	}
	p, err := newPipeline(rep)
	if err != nil {
		return "", err
	}
	defer p.rec.close()
	got, _, steps, err := p.runSteps(in, interval, nil)
	if err != nil {
		return "", err
	}
	return diff(want, got, steps), nil
}

// runSteps sends one RW 1.0 request per step, each with every input
// series' sample of that step (at step × interval), drains the merge after
// the last step, and returns what reached the upstream: values by step, per
// output series (keyed by its labels' string). afterStep, when set, is
// called once each step's request (the last one's drain included) is done.
func (p *pipeline) runSteps(in []parsed, interval time.Duration, afterStep func(step int)) (got map[string]map[int64]float64, gotLabels map[string]labels.Labels, steps int, err error) {
	for _, s := range in {
		steps = max(steps, len(s.values))
	}
	got, gotLabels = map[string]map[int64]float64{}, map[string]labels.Labels{}
	for step := range steps {
		ts := int64(step) * interval.Milliseconds()
		req := &prompb.WriteRequest{}
		for _, s := range in {
			if step < len(s.values) && s.values[step] != nil {
				req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
					Labels:  prompb.FromLabels(s.labels, nil),
					Samples: []prompb.Sample{{Value: *s.values[step], Timestamp: ts}},
				})
			}
		}
		p.at(time.UnixMilli(ts))
		raw, err := req.Marshal()
		if err != nil {
			return nil, nil, 0, err
		}
		code, msg, outs, err := p.send(remotewrite.ProtoV1, s2.EncodeSnappy(nil, raw))
		if err != nil {
			return nil, nil, 0, err
		}
		if code/100 != 2 {
			return nil, nil, 0, fmt.Errorf("step %d: rwfix answered %d: %s", step, code, msg)
		}
		if step == steps-1 {
			// The merge sends what it still holds once its wait is over.
			more, err := p.drain(remotewrite.ProtoV1)
			if err != nil {
				return nil, nil, 0, err
			}
			outs = append(outs, more...)
		}
		for _, o := range outs {
			series, err := wire.Decode(remotewrite.ProtoV1, o)
			if err != nil {
				return nil, nil, 0, err
			}
			for _, s := range series {
				k := s.Labels.String()
				if got[k] == nil {
					got[k], gotLabels[k] = map[int64]float64{}, s.Labels
				}
				for _, smp := range s.Samples {
					got[k][smp.Timestamp/interval.Milliseconds()] = smp.Value
				}
			}
		}
		if afterStep != nil {
			afterStep(step)
		}
	}
	return got, gotLabels, steps, nil
}

func fmtSeq(m map[int64]float64, steps int) string {
	var b strings.Builder
	for i := range int64(steps) {
		if i > 0 {
			b.WriteByte(' ')
		}
		v, ok := m[i]
		switch {
		case !ok:
			b.WriteByte('_')
		case math.IsNaN(v):
			b.WriteString("stale")
		default:
			b.WriteString(wire.FormatValue(v))
		}
	}
	return b.String()
}

func diff(want []parsed, got map[string]map[int64]float64, steps int) string {
	var b strings.Builder
	wantKeys := map[string]bool{}
	for _, w := range want {
		k := w.labels.String()
		wantKeys[k] = true
		exp := map[int64]float64{}
		for i, v := range w.values {
			if v != nil {
				exp[int64(i)] = *v
			}
		}
		g, ok := got[k]
		if !ok {
			fmt.Fprintf(&b, "    missing: %s %s\n", k, fmtSeq(exp, steps))
			continue
		}
		if es, gs := fmtSeq(exp, steps), fmtSeq(g, steps); es != gs {
			fmt.Fprintf(&b, "    %s\n      expected: %s\n      got:      %s\n", k, es, gs)
		}
	}
	var extra []string
	for k, g := range got {
		if !wantKeys[k] {
			extra = append(extra, fmt.Sprintf("    unexpected: %s %s\n", k, fmtSeq(g, steps)))
		}
	}
	sort.Strings(extra)
	for _, e := range extra {
		b.WriteString(e)
	}
	return b.String()
}
