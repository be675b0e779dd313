package relabel

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
)

// Merger is the counter-safe merge behind the "merge" collision policy.
//
// When several source series map to one output label set (LiteLLM's
// status_code="None" rewritten onto an existing status_code="500"), the
// output is one counter whose value is the sum of its sources' latest values:
// what a fixed LiteLLM would have counted. For _created series the output is
// the earliest creation time instead.
//
// Guarantees, across requests and concurrent requests:
//   - an output sample is only ever emitted at a timestamp a source sent, and
//     the timestamps of one output strictly increase;
//   - at most one request carrying a sample of a given output is in flight
//     upstream at a time, so a later sample can never overtake an earlier one
//     on the way to the TSDB (which would answer 400 to the whole batch);
//   - a source that resets (its value drops) is carried: its last value is
//     kept in the sum, so the output shows no fake reset. Only when every live
//     source has reset (a LiteLLM restart) is the carry dropped, and the
//     output resets once, like the real counter;
//   - a source that goes stale keeps its last value in the sum; when every
//     source is stale the output gets a stale marker and its state is dropped;
//   - a sample older than its source's latest (a sender retry) changes nothing.
//
// State is kept only for outputs that a rewrite can reach, is bounded by
// MaxSeries, and sources idle for IdleTimeout are folded into the carry and
// forgotten. After a restart, outputs not restored from the state file are
// held for Warmup (state builds, nothing is emitted) so that the first
// emitted value already includes every source: emitting before that would
// make the output drop (a fake reset) or jump (a fake increase).
type Merger struct {
	mu       sync.Mutex
	cfg      CollisionConfig
	now      func() time.Time
	warmEnds time.Time
	outs     map[uint64][]*mergedSeries // by output hash
	n        int                        // number of outputs
	lastGC   time.Time
	metrics  *mergeMetrics
}

type mergedSeries struct {
	labels   labels.Labels
	min      bool // a _created series: the earliest value, not the sum
	restored bool // loaded from the state file: no warm-up needed
	sources  []*mergeSource
	carry    float64 // values of sources that reset or left, kept in the sum
	lastT    int64   // timestamp of the last emitted sample
	emitted  bool
	inflight int    // requests carrying a sample of this output, not yet answered upstream
	release  func() // decrements inflight; built once per output
	touched  time.Time
}

type mergeSource struct {
	labels  labels.Labels
	v       float64
	t       int64
	stale   bool
	resetAt int64 // timestamp of the sample at which it last reset; MinInt64: never
	touched time.Time
}

type mergeMetrics struct {
	collisions, merged, emitted, full prometheus.Counter
	outputs, sources                  prometheus.GaugeFunc
}

// NewMerger creates the merge state. Create one per process and pass it to
// every Pipeline, so that state survives configuration reloads.
func NewMerger(cfg CollisionConfig, reg prometheus.Registerer) *Merger {
	cfg.setDefaults()
	m := &Merger{cfg: cfg, now: time.Now, outs: map[uint64][]*mergedSeries{}}
	m.warmEnds = m.now().Add(time.Duration(cfg.Warmup))
	f := promauto.With(reg)
	m.metrics = &mergeMetrics{
		collisions: f.NewCounter(prometheus.CounterOpts{Namespace: "rwfix", Name: "collisions_total",
			Help: "Times a second (or further) source series was seen for one output label set, and merged."}),
		merged: f.NewCounter(prometheus.CounterOpts{Namespace: "rwfix", Name: "merged_samples_total",
			Help: "Source samples taken into the merge."}),
		emitted: f.NewCounter(prometheus.CounterOpts{Namespace: "rwfix", Name: "merge_emitted_samples_total",
			Help: "Output samples the merge emitted."}),
		full: f.NewCounter(prometheus.CounterOpts{Namespace: "rwfix", Name: "merge_state_full_total",
			Help: "Outputs not merged because the state held max_series outputs; their rewrites were undone."}),
	}
	m.metrics.outputs = f.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "rwfix", Name: "merge_state_series",
		Help: "Output series in the merge state."}, func() float64 {
		m.mu.Lock()
		defer m.mu.Unlock()
		return float64(m.n)
	})
	m.metrics.sources = f.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "rwfix", Name: "merge_state_sources",
		Help: "Source series in the merge state."}, func() float64 {
		m.mu.Lock()
		defer m.mu.Unlock()
		s := 0
		for _, l := range m.outs {
			for _, o := range l {
				s += len(o.sources)
			}
		}
		return float64(s)
	})
	return m
}

func isCreated(out labels.Labels) bool {
	return strings.HasSuffix(out.Get(model.MetricNameLabel), "_created")
}

// setConfig applies a reloaded configuration's limits (not the warm-up,
// which counts from the process start).
func (m *Merger) setConfig(cfg CollisionConfig) {
	cfg.setDefaults()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cfg = cfg
}

// known reports whether out is an output in the state.
func (m *Merger) known(out labels.Labels) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.find(out, out.Hash()) != nil
}

func (m *Merger) find(out labels.Labels, h uint64) *mergedSeries {
	for _, o := range m.outs[h] {
		if labels.Equal(o.labels, out) {
			return o
		}
	}
	return nil
}

// Merge folds the float samples that one request carries for the sources of
// one output into the state, and returns the samples to send for the output
// (possibly none). ok is false when the state is full: the caller must then
// forward the sources unmerged and unrepaired. When samples are emitted, done
// must be called exactly once, after every upstream has answered the request
// (whatever the answer); otherwise done is nil.
func (m *Merger) Merge(out labels.Labels, sources []labels.Labels, samples [][]model.SamplePair) (emit []model.SamplePair, done func(), ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.gc(now)
	h := out.Hash()
	o := m.find(out, h)
	if o == nil {
		if m.n >= m.cfg.MaxSeries {
			m.metrics.full.Inc()
			return nil, func() {}, false
		}
		o = &mergedSeries{labels: out, min: isCreated(out)}
		m.outs[h] = append(m.outs[h], o)
		m.n++
	}
	o.touched = now

	// Every sample of the request for this output, in timestamp order, so
	// that sources scraped together are summed before a sample is emitted.
	var evBuf [8]event
	events := evBuf[:0]
	for i, ls := range sources {
		src := o.source(ls, now, m.metrics.collisions)
		if i >= len(samples) {
			continue
		}
		for _, s := range samples[i] {
			events = append(events, event{src, s})
		}
	}
	m.metrics.merged.Add(float64(len(events)))
	if len(events) > 1 {
		slices.SortStableFunc(events, func(a, b event) int { return cmp.Compare(a.s.Timestamp, b.s.Timestamp) })
	}

	canEmit := o.inflight == 0 && (o.restored || !now.Before(m.warmEnds))
	for i, ev := range events {
		o.apply(ev.src, int64(ev.s.Timestamp), float64(ev.s.Value))
		if i+1 < len(events) && events[i+1].s.Timestamp == ev.s.Timestamp {
			continue // more sources at this timestamp: sum them first
		}
		t := int64(ev.s.Timestamp)
		if !canEmit || (o.emitted && t <= o.lastT) {
			continue
		}
		v, stale := o.value()
		if stale {
			v = math.Float64frombits(value.StaleNaN)
		}
		emit = append(emit, model.SamplePair{Timestamp: model.Time(t), Value: model.SampleValue(v)})
		o.lastT, o.emitted = t, true
		if stale {
			// Every source is stale: the output ends here. Forget it, so
			// that it starts afresh if its sources come back.
			m.remove(o, h)
			break
		}
	}
	m.metrics.emitted.Add(float64(len(emit)))
	if len(emit) == 0 {
		return nil, nil, true
	}
	o.inflight++
	if o.release == nil {
		o.release = func() {
			m.mu.Lock()
			if o.inflight > 0 {
				o.inflight--
			}
			m.mu.Unlock()
		}
	}
	return emit, o.release, true
}

// event is one source sample of a Merge call.
type event struct {
	src *mergeSource
	s   model.SamplePair
}

// source finds or adds the source with labels ls.
func (o *mergedSeries) source(ls labels.Labels, now time.Time, collisions prometheus.Counter) *mergeSource {
	for _, s := range o.sources { // few: no hashing
		if labels.Equal(s.labels, ls) {
			s.touched = now
			return s
		}
	}
	s := &mergeSource{labels: ls, t: math.MinInt64, resetAt: math.MinInt64, touched: now}
	if len(o.sources) > 0 {
		collisions.Inc()
	}
	o.sources = append(o.sources, s)
	return s
}

// apply takes one source sample into the state.
func (o *mergedSeries) apply(s *mergeSource, t int64, v float64) {
	if t <= s.t {
		return // late or repeated (a sender retry): the state already has newer
	}
	if value.IsStaleNaN(v) {
		s.t, s.stale = t, true
		return
	}
	if s.t != math.MinInt64 && v < s.v && !o.min {
		// The source reset. Keep what it had counted in the sum.
		o.carry += s.v
		s.resetAt = t
		o.maybeRealReset(t)
	}
	s.v, s.t, s.stale = v, t, false
}

// maybeRealReset drops the carry when every live source has reset at the
// same timestamp t: the samples of one scrape share a timestamp, so the
// process behind them restarted, and a fixed counter would have restarted
// too. (Sources that reset at different times reset on their own: their
// carry stays.) Stale sources did not come back after the restart, so they
// leave the sum.
func (o *mergedSeries) maybeRealReset(t int64) {
	for _, s := range o.sources {
		if !s.stale && s.resetAt != t {
			return
		}
	}
	o.carry = 0
	o.sources = slices.DeleteFunc(o.sources, func(s *mergeSource) bool { return s.stale })
}

// value is the output's current value; stale when every source is stale.
func (o *mergedSeries) value() (v float64, stale bool) {
	stale = true
	if o.min {
		v = math.Inf(1)
		for _, s := range o.sources {
			if s.t != math.MinInt64 && !s.stale {
				v, stale = math.Min(v, s.v), false
			}
		}
		return v, stale
	}
	v = o.carry
	for _, s := range o.sources {
		if s.t == math.MinInt64 {
			continue
		}
		v += s.v
		if !s.stale {
			stale = false
		}
	}
	return v, stale
}

func (m *Merger) remove(o *mergedSeries, h uint64) {
	l := slices.DeleteFunc(m.outs[h], func(x *mergedSeries) bool { return x == o })
	if len(l) == 0 {
		delete(m.outs, h)
	} else {
		m.outs[h] = l
	}
	m.n--
}

// gc forgets idle state, at most once per tenth of the idle timeout. An idle
// source's value is folded into the carry, so the sum does not drop; an
// output whose every source is idle is forgotten, and if it comes back it
// starts afresh.
func (m *Merger) gc(now time.Time) {
	idle := time.Duration(m.cfg.IdleTimeout)
	if now.Sub(m.lastGC) < idle/10 {
		return
	}
	m.lastGC = now
	for h, l := range m.outs {
		for _, o := range l {
			if o.inflight > 0 {
				continue
			}
			if now.Sub(o.touched) > idle {
				m.remove(o, h)
				continue
			}
			o.sources = slices.DeleteFunc(o.sources, func(s *mergeSource) bool {
				if now.Sub(s.touched) <= idle {
					return false
				}
				if !o.min && s.t != math.MinInt64 {
					o.carry += s.v
				}
				return true
			})
		}
	}
}
