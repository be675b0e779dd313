package relabel

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"go.yaml.in/yaml/v2"

	"github.com/rwfix/rwfix/remotewrite/series"
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
	// names holds every metric name a preset can touch; byName, the
	// rewrites that apply to each (for MayChange, one map lookup; none
	// for a series of the metric before it, see nameRewrites).
	names  map[string]struct{}
	byName map[string][]*presetRewrite
	// nameLen[n]: some preset metric name is n bytes long (a check before
	// the map lookup, which most series fail).
	nameLen [256]bool
	rules   []*relabel.Config

	userRepaired, userDropped prometheus.Counter

	policy Policy
	// collision holds the limits Activate gives the merge state.
	collision CollisionConfig
	// coverage names what the pipeline merges: its policy, presets and
	// rules (see Merger.setCoverage).
	coverage string
	merger   *Merger
	cache    *decisionCache // nil with user relabel_configs
	// gen is the merge state's configuration generation this pipeline
	// activated (see Merger.gen); 0: not activated, not checked.
	gen uint64

	builders sync.Pool
}

// New compiles cfg. It validates cfg first. merger holds the merge state for
// the merge policy; pass the process' one so that state survives reloads
// (nil: a private one, configured by cfg). New leaves a merger passed in as
// it is: Activate gives it cfg's collision limits, once the pipeline is sure
// to run.
func New(cfg Config, m *Metrics, merger *Merger) (*Pipeline, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	private := false
	if merger == nil && cfg.Collision.Policy == PolicyMerge {
		merger, private = NewMerger(cfg.Collision, nil), true
	}
	p := &Pipeline{
		policy:       cfg.Collision.Policy,
		collision:    cfg.Collision,
		merger:       merger,
		names:        map[string]struct{}{},
		byName:       map[string][]*presetRewrite{},
		rules:        cfg.RelabelConfigs,
		userRepaired: m.repaired.WithLabelValues(RuleUserRelabel),
		userDropped:  m.dropped.WithLabelValues(RuleUserRelabel),
	}
	rules, _ := yaml.Marshal(cfg.RelabelConfigs)
	p.coverage = fmt.Sprintf("%s %q %s", cfg.Collision.Policy, cfg.Presets, rules)
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
	for i := range p.rewrites {
		for _, n := range p.rewrites[i].names {
			p.byName[n] = append(p.byName[n], &p.rewrites[i])
			p.nameLen[min(len(n), 255)] = true
		}
	}
	p.builders.New = func() any { return labels.NewBuilder(labels.EmptyLabels()) }
	if len(p.rules) == 0 && len(p.rewrites) <= 64 {
		// One memory budget for the cache and the merge state, from
		// max_series (see decisionCache).
		p.cache = newDecisionCache(cfg.Collision.MaxSeries, merger)
	}
	if private {
		p.Activate(false)
	}
	return p, nil
}

// Activate gives the merge state the pipeline's collision limits
// (max_series, max_wait, birth_wait, idle_timeout) and what its rules can
// map onto an output (see Merger.preimage). The state outlives pipelines (it is
// the process' one), so a reload calls Activate only once everything else of
// the new configuration has been built: a configuration refused after New
// must leave the running merge as it was.
//
// partitionsChanged says that the requests' merge partitions (the upstreams'
// forward_headers) changed: no output in the state will see its partition
// again. Every output whose sources this pipeline no longer merges into it
// is retired (see Merger.retire).
func (p *Pipeline) Activate(partitionsChanged bool) {
	if p.merger != nil {
		p.merger.setConfig(p.collision)
		p.merger.setCoverage(p.coverage, p.policy == PolicyMerge)
		p.merger.setPreimage(p.preimageSize)
		p.merger.retire(p.mergesInto, partitionsChanged)
		p.gen = p.merger.gen.Load()
	}
}

// mergesInto reports whether this pipeline merges the series src into the
// output out that the merge state holds (without counting anything).
func (p *Pipeline) mergesInto(src, out labels.Labels) bool {
	if p.policy != PolicyMerge {
		return false
	}
	got, changed, keep, _ := p.repairCounted(src, false)
	if !keep || !labels.Equal(got, out) {
		return false
	}
	// Merges(got, changed), where an output of user rules is known: it is
	// in the state.
	if changed || len(p.rules) > 0 {
		return true
	}
	name := out.Get(model.MetricNameLabel)
	for i := range p.rewrites {
		if rw := &p.rewrites[i]; rw.matchesName(name) && out.Get(rw.label) == rw.to {
			return true
		}
	}
	return false
}

// MayChange reports whether the series can be changed, dropped or merged by
// the pipeline. It reads at most a few labels through s and does not
// allocate: a false answer lets the caller forward the series without ever
// building its labels. Under the merge policy, a series that carries a
// preset's target value (status_code="500") may be merged, so it counts.
func (p *Pipeline) MayChange(s series.Getter) bool {
	return p.mayChange(s, &nameRewrites{})
}

// nameRewrites is the last metric names whose rewrites mayChange looked
// up, and them: a request's series come grouped by metric, or, with
// LiteLLM's _created twins, alternating between a counter and its twin; a
// comparison with the names seen last costs a third of the map lookup (a
// hash of the name, a probe, a comparison). The names point into the
// request: they are kept for one request's series only (see decide).
type nameRewrites struct {
	names [nameMemo]string
	rws   [nameMemo][]*presetRewrite
	n     int // names set, up to nameMemo
	next  int // the one to replace next, when all are set
}

// nameMemo is how many names nameRewrites keeps: a counter, its _created
// twin, and the two of the other counter.
const nameMemo = 4

// lookup returns the rewrites of the metric name, from the memo or the map.
func (m *nameRewrites) lookup(p *Pipeline, name string) []*presetRewrite {
	for k := range m.n {
		if m.names[k] == name {
			return m.rws[k]
		}
	}
	rws := p.byName[name]
	k := m.n
	if k < nameMemo {
		m.n++
	} else {
		k, m.next = m.next, (m.next+1)%nameMemo
	}
	m.names[k], m.rws[k] = name, rws
	return rws
}

// mayChange is MayChange, with the last names' rewrites in last.
func (p *Pipeline) mayChange(s series.Getter, last *nameRewrites) bool {
	if len(p.rules) > 0 {
		return true // User rules can match on any label.
	}
	name := s.Get(model.MetricNameLabel)
	if !p.nameLen[min(len(name), 255)] {
		return false
	}
	for _, rw := range last.lookup(p, name) {
		if v := s.Get(rw.label); v == rw.from || (p.policy == PolicyMerge && v == rw.to) {
			return true
		}
	}
	return false
}

// Repair runs the presets and then the user's rules on lbls, which it does
// not modify. It returns the output labels, whether they differ from lbls,
// and whether the series is kept. The output is sorted, has no empty values
// and no duplicate names (labels.Builder guarantees all three).
func (p *Pipeline) Repair(lbls labels.Labels) (out labels.Labels, changed, keep bool) {
	out, changed, keep, _ = p.repair(lbls)
	return out, changed, keep
}

// countFired counts, for a series decided before, the preset rewrites that
// changed it (bit i: p.rewrites[i]), as Repair counted them then.
func (p *Pipeline) countFired(fired uint64) {
	for i := 0; fired != 0; i++ {
		if fired&1 != 0 {
			p.rewrites[i].repaired.Inc()
		}
		fired >>= 1
	}
}

// repair is Repair, also reporting which preset rewrites fired (bit i:
// p.rewrites[i], for the first 64).
func (p *Pipeline) repair(lbls labels.Labels) (out labels.Labels, changed, keep bool, fired uint64) {
	return p.repairCounted(lbls, true)
}

// repairCounted is repair; with count false it leaves the rule counters
// alone (a reload asking where the merge state's sources now go).
func (p *Pipeline) repairCounted(lbls labels.Labels, count bool) (out labels.Labels, changed, keep bool, fired uint64) {
	if len(p.rules) == 0 {
		if _, ok := p.names[lbls.Get(model.MetricNameLabel)]; !ok {
			return lbls, false, true, 0
		}
	}
	b := p.builders.Get().(*labels.Builder)
	defer p.builders.Put(b)
	b.Reset(lbls)

	presetChanged := false
	for i := range p.rewrites {
		if p.rewrites[i].apply(b) {
			if count {
				p.rewrites[i].repaired.Inc()
			}
			presetChanged = true
			if i < 64 {
				fired |= 1 << i
			}
		}
	}
	if len(p.rules) == 0 {
		if !presetChanged {
			return lbls, false, true, 0
		}
		return p.output(b, lbls), true, true, fired
	}

	mid := lbls
	if presetChanged {
		mid = b.Labels()
	}
	if !relabel.ProcessBuilder(b, p.rules...) {
		if count {
			p.userDropped.Inc()
		}
		return labels.EmptyLabels(), true, false, fired
	}
	out = b.Labels()
	if out.IsEmpty() {
		// Prometheus drops a series whose relabeling left no labels.
		if count {
			p.userDropped.Inc()
		}
		return out, true, false, fired
	}
	if !labels.Equal(out, mid) {
		if count {
			p.userRepaired.Inc()
		}
	} else if !presetChanged {
		return lbls, false, true, fired
	}
	return p.output(b, lbls), true, true, fired
}

// output returns the builder's labels, with keep_distinct's markers: every
// label whose value the rules changed or removed keeps its original value in
// <name>_original, so the rewritten series cannot land on another one.
func (p *Pipeline) output(b *labels.Builder, orig labels.Labels) labels.Labels {
	if p.policy == PolicyKeepDistinct {
		orig.Range(func(l labels.Label) {
			if b.Get(l.Name) != l.Value {
				b.Set(l.Name+MarkerSuffix, l.Value)
			}
		})
	}
	return b.Labels()
}

// Merges reports whether the output label set out (changed: made by a
// rewrite) must go through Merge: under the merge policy, every output a
// rewrite can reach. For presets those are known in advance (the target
// value, e.g. status_code="500", on the preset's metrics), so a genuine 500
// series is tracked from its first sample. For user rules, an output becomes
// known when a rewrite first produces it.
func (p *Pipeline) Merges(out labels.Labels, changed bool) bool {
	if p.policy != PolicyMerge {
		return false
	}
	if changed {
		return true
	}
	name := out.Get(model.MetricNameLabel)
	for i := range p.rewrites {
		rw := &p.rewrites[i]
		if rw.matchesName(name) && out.Get(rw.label) == rw.to {
			return true
		}
	}
	return len(p.rules) > 0 && p.merger.known(out)
}

// preimageSize is how many label sets the rules can map onto out: with
// presets only, each rewrite that produces out's value of its label has two
// sources for it (the value rewritten, and the value itself); 0 (unknown)
// with user rules, which can map any label set anywhere.
func (p *Pipeline) preimageSize(out labels.Labels) int {
	if len(p.rules) > 0 || p.policy != PolicyMerge {
		return 0
	}
	name := out.Get(model.MetricNameLabel)
	n := 1
	for i := range p.rewrites {
		rw := &p.rewrites[i]
		if rw.matchesName(name) && out.Get(rw.label) == rw.to {
			n *= 2
		}
	}
	return n
}

// TargetsKnown reports whether Merges recognizes every output a rewrite can
// reach from its labels alone: true with presets only (their target values
// are known); user rules can produce any label set.
func (p *Pipeline) TargetsKnown() bool { return len(p.rules) == 0 }

// BeginMerge starts one request's use of the merge state (see Merger); part
// is the request's partition (tenant). Nil without the merge policy.
func (p *Pipeline) BeginMerge(part string) MergeTx {
	if p.merger == nil {
		return nil
	}
	return p.merger.begin(part, p.gen)
}

// Retrying tells the merge state that a request of partition part was
// answered so that the sender retries it (see Merger.Retrying).
func (p *Pipeline) Retrying(part string) {
	if p.merger != nil {
		p.merger.Retrying(part)
	}
}

// MergePending reports whether the merge state has samples waiting for a
// request to ride on: then every request should begin a merge, even one
// without any source.
func (p *Pipeline) MergePending() bool { return p.merger != nil && p.merger.Pending() }

// SetMergeClock drives the merge state's clock (offline runs follow the
// samples' time; see Merger.SetClock).
func (p *Pipeline) SetMergeClock(now func() time.Time) {
	if p.merger != nil {
		p.merger.SetClock(now)
	}
}

// MaxWait is the longest a merged output waits for a source.
func (p *Pipeline) MaxWait() time.Duration {
	if p.merger == nil {
		return 0
	}
	return p.merger.maxWait()
}

// String describes the pipeline for logs.
func (p *Pipeline) String() string {
	return strconv.Itoa(len(p.rewrites)) + " preset rewrites, " + strconv.Itoa(len(p.rules)) + " relabel rules"
}
