package ui

import (
	"fmt"

	"github.com/prometheus/prometheus/model/labels"
	promrelabel "github.com/prometheus/prometheus/model/relabel"

	"github.com/rwfix/rwfix/relabel"
)

// traceStep is what one rule did to a series' labels.
type traceStep struct {
	Rule    string        `json:"rule"` // a preset's name, or relabel_configs[N]
	Changes []labelChange `json:"changes"`
	Dropped bool          `json:"dropped,omitempty"`
}

// labelChange is one label a rule changed: From is "" when the rule added
// it, To is "" when the rule removed it.
type labelChange struct {
	Label string `json:"label"`
	From  string `json:"from"`
	To    string `json:"to"`
}

// tracer replays a configuration's rules one at a time, to say which rule
// changed what. It explains; the output itself always comes from the real
// pipeline run.
type tracer struct {
	presets []string
	single  []*relabel.Pipeline // one per preset, alone
	rules   []*promrelabel.Config
}

func newTracer(cfg relabel.Config) (*tracer, error) {
	t := &tracer{presets: cfg.Presets, rules: cfg.RelabelConfigs}
	for _, name := range cfg.Presets {
		c := cfg
		c.Presets, c.RelabelConfigs = []string{name}, nil
		c.Collision.Policy = relabel.PolicyKeepDistinct // stateless; markers only
		p, err := relabel.New(c, nil, nil)
		if err != nil {
			return nil, err
		}
		t.single = append(t.single, p)
	}
	return t, nil
}

// trace returns the steps that changed ls, and the labels after them (keep
// false: a rule dropped the series).
func (t *tracer) trace(ls labels.Labels) (steps []traceStep, out labels.Labels, keep bool) {
	cur := ls
	for i, p := range t.single {
		next, changed, _ := p.Repair(cur)
		if !changed {
			continue
		}
		// Markers belong to the keep_distinct policy's output, not to the
		// preset: the real run adds them when they apply.
		next = withoutMarkers(next, cur)
		if ch := diffLabels(cur, next); len(ch) > 0 {
			steps = append(steps, traceStep{Rule: t.presets[i], Changes: ch})
			cur = next
		}
	}
	b := labels.NewBuilder(labels.EmptyLabels())
	for i, r := range t.rules {
		b.Reset(cur)
		name := fmt.Sprintf("relabel_configs[%d] (%s)", i, r.Action)
		if !promrelabel.ProcessBuilder(b, r) {
			return append(steps, traceStep{Rule: name, Dropped: true}), labels.EmptyLabels(), false
		}
		next := b.Labels()
		if ch := diffLabels(cur, next); len(ch) > 0 {
			steps = append(steps, traceStep{Rule: name, Changes: ch})
			cur = next
		}
	}
	if cur.IsEmpty() {
		return append(steps, traceStep{Rule: "no labels left", Dropped: true}), cur, false
	}
	return steps, cur, true
}

func withoutMarkers(ls, before labels.Labels) labels.Labels {
	b := labels.NewBuilder(ls)
	ls.Range(func(l labels.Label) {
		if n := len(l.Name) - len(relabel.MarkerSuffix); n > 0 && l.Name[n:] == relabel.MarkerSuffix && !before.Has(l.Name) {
			b.Del(l.Name)
		}
	})
	return b.Labels()
}

// diffLabels lists the labels that differ between a and b, by name.
func diffLabels(a, b labels.Labels) []labelChange {
	var out []labelChange
	a.Range(func(l labels.Label) {
		if v := b.Get(l.Name); v != l.Value {
			out = append(out, labelChange{Label: l.Name, From: l.Value, To: v})
		}
	})
	b.Range(func(l labels.Label) {
		if !a.Has(l.Name) {
			out = append(out, labelChange{Label: l.Name, To: l.Value})
		}
	})
	return out
}
