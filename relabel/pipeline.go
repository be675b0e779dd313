package relabel

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
)

// RuleUserRelabel is the rule label under which changes made by the user's
// relabel_configs are counted. Prometheus' relabel syntax has no rule names,
// and the configs run as one chain, so they are counted as one stage.
const RuleUserRelabel = "relabel_configs"

// Metrics are the pipeline's counters. They are created once per process and
// shared by every Pipeline built on reload, so counts survive a reload.
type Metrics struct {
	repaired *prometheus.CounterVec
	dropped  *prometheus.CounterVec
}

// NewMetrics registers the pipeline's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		repaired: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rwfix",
			Name:      "series_repaired_total",
			Help:      "Series whose labels a rule changed, by rule (a preset name, or relabel_configs).",
		}, []string{"rule"}),
		dropped: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rwfix",
			Name:      "series_dropped_total",
			Help:      "Series dropped on purpose by a rule (keep/drop actions, or no labels left).",
		}, []string{"rule"}),
	}
}

type presetRewrite struct {
	valueRewrite
	repaired prometheus.Counter
}

// Pipeline is a compiled repair configuration. It is safe for concurrent use
// and immutable: a reload builds a new one.
type Pipeline struct {
	rewrites []presetRewrite
	// names holds every metric name a preset can touch, for MayChange.
	names map[string]struct{}
	rules []*relabel.Config

	userRepaired, userDropped prometheus.Counter

	builders sync.Pool
}

// New compiles cfg. It validates cfg first.
func New(cfg Config, m *Metrics) (*Pipeline, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	p := &Pipeline{
		names:        map[string]struct{}{},
		rules:        cfg.RelabelConfigs,
		userRepaired: m.repaired.WithLabelValues(RuleUserRelabel),
		userDropped:  m.dropped.WithLabelValues(RuleUserRelabel),
	}
	for _, name := range cfg.Presets {
		rws, _ := lookupPreset(name) // Validate checked it exists.
		c := m.repaired.WithLabelValues(name)
		for _, rw := range rws {
			p.rewrites = append(p.rewrites, presetRewrite{valueRewrite: rw, repaired: c})
			for _, n := range rw.names {
				p.names[n] = struct{}{}
			}
		}
	}
	p.builders.New = func() any { return labels.NewBuilder(labels.EmptyLabels()) }
	return p, nil
}

// MayChange reports whether a series with this metric name can be changed or
// dropped by the pipeline. It does not allocate. A false answer lets the
// caller forward the series without building its labels.
func (p *Pipeline) MayChange(metricName string) bool {
	if len(p.rules) > 0 {
		return true // User rules can match on any label.
	}
	_, ok := p.names[metricName]
	return ok
}

// Repair runs the presets and then the user's rules on lbls, which it does
// not modify. It returns the output labels, whether they differ from lbls,
// and whether the series is kept. The output is sorted, has no empty values
// and no duplicate names (labels.Builder guarantees all three).
func (p *Pipeline) Repair(lbls labels.Labels) (out labels.Labels, changed, keep bool) {
	if !p.MayChange(lbls.Get(model.MetricNameLabel)) {
		return lbls, false, true
	}
	b := p.builders.Get().(*labels.Builder)
	defer p.builders.Put(b)
	b.Reset(lbls)

	presetChanged := false
	for i := range p.rewrites {
		if p.rewrites[i].apply(b) {
			p.rewrites[i].repaired.Inc()
			presetChanged = true
		}
	}
	if len(p.rules) == 0 {
		if !presetChanged {
			return lbls, false, true
		}
		return b.Labels(), true, true
	}

	mid := lbls
	if presetChanged {
		mid = b.Labels()
	}
	if !relabel.ProcessBuilder(b, p.rules...) {
		p.userDropped.Inc()
		return labels.EmptyLabels(), true, false
	}
	out = b.Labels()
	if out.IsEmpty() {
		// Prometheus drops a series whose relabeling left no labels.
		p.userDropped.Inc()
		return out, true, false
	}
	if !labels.Equal(out, mid) {
		p.userRepaired.Inc()
	} else if !presetChanged {
		return lbls, false, true
	}
	return out, true, true
}

// String describes the pipeline for logs.
func (p *Pipeline) String() string {
	return strconv.Itoa(len(p.rewrites)) + " preset rewrites, " + strconv.Itoa(len(p.rules)) + " relabel rules"
}
