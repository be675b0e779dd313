package relabel

import (
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
)

// Sample is one float sample of a merge source or output: timestamp, value
// and RW 2.0 start timestamp (0: none). An alias of an unnamed struct, so that
// package remotewrite can name the same type without importing this one.
type Sample = struct {
	T, ST int64
	V     float64
}

// Emit is what a request carries for one merged output: its labels and the
// samples to send, in timestamp order. Group is the index of the Add call of
// the same transaction that named this output (the request carries its
// sources: the output takes the first source's slot), or -1 when the
// request carries none of its sources (the output is appended to the request).
//
// Retry marks samples that the upstream may have written already: sent before
// (the send failed or its answer was lost) or finalized before this process
// started (restored from the log, or re-made from a sender's retry). A TSDB
// refuses a repeat older than its newest sample of the series (out of order,
// 400), so such samples go in a request of their own, never making the
// sender's batch fail; how much of them was taken is told to Done sample by
// sample (see MergeRun).
type Emit = struct {
	Group   int
	Labels  labels.Labels
	Samples []Sample
	Retry   bool
}

// MergeTx is one request's use of the merge state; see Merger.Begin.
type MergeTx = interface {
	Add(out labels.Labels, sources []labels.Labels, samples [][]Sample) bool
	// AddHashed is Add for an output whose labels.Labels.Hash is known.
	AddHashed(out labels.Labels, h uint64, sources []labels.Labels, samples [][]Sample) bool
	Collect() []Emit
	// Done: see MergeRun.Done; taken has one entry per Retry emit that
	// Collect returned, in order.
	Done(ok bool, taken []int)
}

// shard is the exact counter merge behind the "merge" collision policy, for
// the outputs whose label hash falls on it (Merger, merger.go, holds the
// shards; the state machine below is each shard's, unchanged by sharding).
//
// When several source series map to one output label set (LiteLLM's
// status_code="None" rewritten onto an existing status_code="500"), the
// output is one counter. Its sample at timestamp T is
//
//	carry + Σ over its sources of the source's value at T
//
// (a source's value at T is its latest sample at or before T; a source that
// went stale keeps its last count in the sum; for _created series: the
// smallest value of the live sources instead of the sum). The carry keeps the
// count of a source that reset on its own (its value dropped while the other
// sources did not), so the output never shows a fake reset; when every live
// source resets at one timestamp (the exporter restarted) the carry and the
// stale sources are dropped and the output resets once, like the real counter.
//
// One mechanism keeps the invariants: every output is a small state machine
// with a frontier F, the last timestamp it has finalized. Source samples are
// queued per source; the next timestamp T (the smallest queued one) is
// finalized, in order, once every source of the output has been seen at or
// after T, is stale, or is overdue (silent for longer than the wait bound,
// learned from the traffic: see waitBound). A finalized sample joins the
// output's send queue; the queue rides on the request that finalized it, or,
// if the output already has samples in flight upstream or was finalized by
// the clock, on the next request (of the same partition: tenant) — so the
// samples of one output reach the upstream strictly in order, none skipped,
// and a request in flight is never overtaken. A send that fails keeps its
// samples queued: they are sent again, with the same values.
//
// A new output (first seen, or after a start without state) first learns its
// sources for one wait bound: its samples are held, then finalized at their
// own timestamps. Every state change is appended to a log in the data
// directory before the request that caused it is answered (see mergelog.go),
// so a restart, a SIGKILL or an OOM kill resumes with the exact state.
type shard struct {
	w     *Merger // the shared parts: ids, the output count, the log, the metrics
	mu    sync.Mutex
	cfg   CollisionConfig
	now   func() time.Time
	outs  map[outKey][]*output
	parts map[string]*partition
	// forgotten holds, for outputs that idle GC forgot, the last timestamp
	// they finalized: if one comes back, it never sends at or before it.
	forgotten map[outKey]int64
	n         int // outputs
	nsrc      int // sources
	lastGC    time.Time
	// gcAt is when the next idle GC is due (a stamp), read without the
	// lock: a request visits a shard it has nothing for only then.
	gcAt    atomic.Int64
	pending atomic.Int64 // outputs on some partition's ready or waiting list
	// interval is the smallest positive step between two samples of one
	// source seen so far (ms), the scrape interval; 0 until known.
	interval int64
	log      *mergeLog // nil: not durable (shared by every shard)
	replay   bool      // applying the log: no clock decisions, no logging
	// retryUntil: output samples at or before it (ms) may have been written
	// by an earlier process; they are sent as retries.
	retryUntil int64
	metrics    *mergeMetrics
}

type outKey struct {
	part string
	h    uint64
}

type output struct {
	sh       *shard // the shard that holds it
	id       uint64
	part     string
	labels   labels.Labels
	min      bool // a _created series: the smallest value, not the sum
	sources  []*source
	carry    float64
	st       int64 // RW 2.0 start timestamp: the earliest since the last real reset
	f        int64 // frontier: last finalized timestamp (MinInt64: none)
	q        []Sample
	inflight int  // q[:inflight] rides on a request not yet answered
	tried    int  // q[:tried] was sent before: a retry
	learning bool // sources still being learned: nothing is finalized
	created  stamp
	held     stamp // since when samples have been waiting to be finalized
	touched  stamp
	listed   uint8 // on the partition's lists: listReady, listWaiting
	parked   []parked
	gone     bool // forgotten (idle): not in the state any more
}

// stamp is an instant of the merge's clock, in nanoseconds since
// clockBase: 8 bytes of state where a time.Time takes 24. Differences of
// stamps of the wall clock use its monotonic reading (as time.Time.Sub does),
// so a step of the system clock neither ends a wait early nor prolongs it.
type stamp int64

// clockBase is the origin of stamps (with a monotonic reading).
var clockBase = time.Now()

func stampOf(t time.Time) stamp { return stamp(t.Sub(clockBase)) }

// since is how long before now s was.
func since(now time.Time, s stamp) time.Duration { return time.Duration(stampOf(now) - s) }

// parked is the count a source had before it reset, until settleResets
// decides whether it stays in the sum (carry) or not (real reset).
type parked struct {
	s *source
	v float64
	t int64 // the timestamp of the sample that dropped
}

const (
	listReady   = 1
	listWaiting = 2
)

type source struct {
	id      uint64
	labels  labels.Labels
	queue   []Sample // received, not yet consumed (t > the output's frontier)
	lastT   int64    // last received timestamp (MinInt64: none)
	lastStl bool     // the last received sample is a stale marker
	firstT  int64    // first received timestamp
	arrival stamp
	has     bool    // v holds a count
	v       float64 // last non-stale value
	st      int64   // start timestamp of the last consumed sample
	stale   bool    // the last consumed sample is a stale marker
	resetAt int64   // timestamp at which it last reset
	bornAt  int64   // timestamp of its first count (after joining or a real reset)
}

// partition holds the outputs of one tenant (the values of the upstreams'
// forward_headers) that wait for a request to ride on.
type partition struct {
	ready    []*output
	waiting  map[*output]struct{}
	nextScan time.Time
}

type mergeMetrics struct {
	collisions, merged, emitted, full, overdue, unknown, late, logErrors prometheus.Counter
}

// maxHeld bounds the timestamps an output holds while a source lags: beyond
// it the oldest is finalized with the lagging source's latest value (counted
// as overdue). It bounds memory when one shard of a sender falls far behind.
const maxHeld = 512

// scanEvery is how often a partition's waiting outputs are checked against
// the clock.
const scanEvery = 250 * time.Millisecond

// newShard creates one shard of w's merge state.
func newShard(w *Merger, cfg CollisionConfig) *shard {
	m := &shard{w: w, cfg: cfg, now: time.Now, outs: map[outKey][]*output{}, parts: map[string]*partition{}, forgotten: map[outKey]int64{}, metrics: w.metrics}
	// A minute of margin for the clocks of the sender and rwfix.
	m.retryUntil = m.now().Add(time.Minute).UnixMilli()
	return m
}

func isCreated(out labels.Labels) bool {
	return strings.HasSuffix(out.Get(model.MetricNameLabel), "_created")
}

// known reports whether out is an output in the state (any partition).
func (m *shard) known(out labels.Labels, h uint64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, l := range m.outs {
		if k.h != h {
			continue
		}
		for _, o := range l {
			if labels.Equal(o.labels, out) {
				return true
			}
		}
	}
	return false
}

func (m *shard) find(part string, out labels.Labels, h uint64) *output {
	for _, o := range m.outs[outKey{part, h}] {
		if labels.Equal(o.labels, out) {
			return o
		}
	}
	return nil
}

// waitBound is how long an output waits for a source that has not reported
// at a timestamp before taking the source at its latest value, and how long
// a new output learns its sources: twice the scrape interval (learned from
// the traffic) plus 10 s for the sender's batching (Prometheus'
// batch_send_deadline is 5 s) and network, at most collision.max_wait;
// max_wait until the interval is known.
func (m *shard) waitBound() time.Duration {
	if m.interval <= 0 {
		return time.Duration(m.cfg.MaxWait)
	}
	b := 2*time.Duration(m.interval)*time.Millisecond + 10*time.Second
	return min(b, time.Duration(m.cfg.MaxWait))
}

// Pending reports, without locking, whether some output waits for a request
// to ride on (or for the clock): then every request should Begin and
// Collect, even one that carries no source.
func (m *shard) Pending() bool { return m.pending.Load() > 0 }

// mergeTx is one request's transaction on one shard (see shardedTx).
type mergeTx struct {
	m        *shard
	part     string
	groups   []*output // by Add call; nil when not merged
	attached []*output
	retry    []bool // by attached
}

// add folds one request's float samples for the sources of out (label
// hash h) into the shard. It returns false when the state is full: the caller must then
// forward the sources unmerged and unrepaired.
func (tx *mergeTx) add(out labels.Labels, h uint64, sources []labels.Labels, samples [][]Sample) bool {
	m := tx.m
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	o := m.output(tx.part, out, h, now)
	if o == nil {
		tx.groups = append(tx.groups, nil)
		return false
	}
	tx.groups = append(tx.groups, o)
	o.touched = stampOf(now)
	// Every sample of every source, each source's in timestamp order (a
	// request may carry one series several times).
	for i, ls := range sources {
		s := m.source(o, ls, now)
		if i >= len(samples) {
			continue
		}
		smp := samples[i]
		if !slices.IsSortedFunc(smp, func(a, b Sample) int { return cmpInt(a.T, b.T) }) {
			smp = slices.Clone(smp)
			slices.SortStableFunc(smp, func(a, b Sample) int { return cmpInt(a.T, b.T) })
		}
		for _, p := range smp {
			m.receive(o, s, p, now)
		}
	}
	m.advance(o, now)
	return true
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// output finds or creates the output; nil when the state is full.
func (m *shard) output(part string, out labels.Labels, h uint64, now time.Time) *output {
	if o := m.find(part, out, h); o != nil {
		return o
	}
	if !m.w.reserve(m.cfg.MaxSeries) {
		m.metrics.full.Inc()
		return nil
	}
	o := m.newOutput(m.w.nextID.Add(1), part, out, now) // counted by reserve
	o.learning = true
	m.logNewOutput(o)
	return o
}

// newOutput adds an output to the shard; the caller counts it in w.total.
func (m *shard) newOutput(id uint64, part string, out labels.Labels, now time.Time) *output {
	o := &output{sh: m, id: id, part: part, labels: out, min: isCreated(out), f: math.MinInt64, created: stampOf(now), touched: stampOf(now)}
	k := outKey{part, out.Hash()}
	if f, ok := m.forgotten[k]; ok {
		o.f = f // it was forgotten: nothing at or before what it sent then
		delete(m.forgotten, k)
	}
	m.outs[k] = append(m.outs[k], o)
	m.n++
	return o
}

// source finds or adds the source with labels ls.
func (m *shard) source(o *output, ls labels.Labels, now time.Time) *source {
	for _, s := range o.sources { // few: no hashing
		if labels.Equal(s.labels, ls) {
			return s
		}
	}
	s := m.newSource(o, m.w.nextID.Add(1), ls, now)
	m.logNewSource(o, s)
	return s
}

func (m *shard) newSource(o *output, id uint64, ls labels.Labels, now time.Time) *source {
	s := &source{id: id, labels: ls, lastT: math.MinInt64, firstT: math.MinInt64, arrival: stampOf(now),
		resetAt: math.MinInt64, bornAt: math.MinInt64}
	if len(o.sources) > 0 && !m.replay {
		m.metrics.collisions.Inc()
	}
	o.sources = append(o.sources, s)
	m.nsrc++
	return s
}

// receive queues one source sample. A sample at or before the source's
// latest is a sender's retry (or a duplicate series): ignored.
func (m *shard) receive(o *output, s *source, p Sample, now time.Time) {
	s.arrival = stampOf(now)
	if p.T <= s.lastT {
		return
	}
	if !m.replay {
		m.metrics.merged.Inc()
		m.logSample(s, p)
	}
	if s.lastT != math.MinInt64 {
		if d := p.T - s.lastT; d > 0 && (m.interval == 0 || d < m.interval) {
			m.interval = d
		}
	} else {
		s.firstT = p.T
	}
	s.lastT, s.lastStl = p.T, value.IsStaleNaN(p.V)
	if p.T <= o.f {
		// The output already finalized this timestamp without it (the
		// source is new, or was overdue): it counts from the next one on.
		if !m.replay {
			m.metrics.late.Inc()
		}
		s.queue = append(s.queue, p)
		if m.consume(o, s, len(s.queue)) {
			m.settleResets(o)
		}
		return
	}
	if len(s.queue) == 0 && !o.hasHeld() {
		o.held = stampOf(now)
	}
	s.queue = append(s.queue, p)
}

func (o *output) hasHeld() bool {
	for _, s := range o.sources {
		if len(s.queue) > 0 {
			return true
		}
	}
	return false
}

// next is the smallest queued timestamp, and whether there is one.
func (o *output) next() (int64, bool) {
	t, ok := int64(math.MaxInt64), false
	for _, s := range o.sources {
		if len(s.queue) > 0 && s.queue[0].T < t {
			t, ok = s.queue[0].T, true
		}
	}
	return t, ok
}

// advance finalizes every timestamp it can, in order, and takes the clock's
// decisions: the end of learning, overdue sources. Each finalized timestamp
// is logged with whether it was sent, so that a replay of the log makes the
// same decisions without the clock.
func (m *shard) advance(o *output, now time.Time) {
	for {
		t, ok := o.next()
		if !ok {
			break
		}
		if o.learning {
			if since(now, o.created) < m.waitBound() {
				break
			}
			m.endLearning(o)
			continue
		}
		if !o.complete(t) {
			if !m.overdue(o, now) {
				break
			}
			m.metrics.overdue.Inc()
		}
		m.finalize(o, t, true)
	}
	m.list(o)
}

// complete reports whether every source has been seen at or after t, or is
// stale (absent: not waited for).
func (o *output) complete(t int64) bool {
	for _, s := range o.sources {
		if s.lastT < t && !s.lastStl && s.lastT != math.MinInt64 {
			return false
		}
	}
	return true
}

// overdue reports whether the output may stop waiting for its lagging
// sources: each has been silent, and the output has held samples, for longer
// than the wait bound; or the output holds too many timestamps.
func (m *shard) overdue(o *output, now time.Time) bool {
	for _, s := range o.sources {
		if len(s.queue) > maxHeld {
			return true
		}
	}
	b := m.waitBound()
	if since(now, o.held) < b {
		return false
	}
	for _, s := range o.sources {
		if len(s.queue) == 0 && !s.lastStl && since(now, s.arrival) < b {
			return false
		}
	}
	return true
}

// endLearning ends an output's learning: the timestamps before the first
// sample of some source are consumed without being sent (that source's
// value there is unknown: a gap, never a wrong value).
func (m *shard) endLearning(o *output) {
	o.learning = false
	known := int64(math.MinInt64)
	for _, s := range o.sources {
		known = max(known, s.firstT)
	}
	for {
		t, ok := o.next()
		if !ok || t >= known {
			return
		}
		m.metrics.unknown.Inc()
		m.finalize(o, t, false)
	}
}

// finalize computes the output at t from every source's samples up to t and,
// with emit, queues it for sending.
func (m *shard) finalize(o *output, t int64, emit bool) {
	o.learning = false
	if !m.replay {
		m.logFinal(o, t, emit)
	}
	resets := 0
	for _, s := range o.sources {
		n := 0
		for n < len(s.queue) && s.queue[n].T <= t {
			n++
		}
		if n > 0 && m.consume(o, s, n) {
			resets++
		}
	}
	o.f = t
	if resets > 0 {
		m.settleResets(o)
	}
	if !emit {
		return
	}
	v, stale := o.value()
	if stale {
		v = math.Float64frombits(value.StaleNaN)
	}
	o.q = append(o.q, Sample{T: t, V: v, ST: o.st})
	if !m.replay {
		m.metrics.emitted.Inc()
	}
}

// consume takes s.queue[:n] into the source's value. It reports whether the
// source reset (its value dropped, across a stale gap too); the count it had
// is then parked in resetFrom until settleResets decides.
func (m *shard) consume(o *output, s *source, n int) (reset bool) {
	for _, p := range s.queue[:n] {
		if value.IsStaleNaN(p.V) {
			s.stale = true
			continue
		}
		switch {
		case !s.has:
			s.bornAt = p.T
		case p.V < s.v && !o.min:
			reset = true
			s.resetAt = p.T
			o.parked = append(o.parked, parked{s: s, v: s.v, t: p.T})
		}
		if p.ST != 0 && (o.st == 0 || p.ST < o.st) {
			o.st = p.ST
		}
		s.v, s.st, s.has, s.stale = p.V, p.ST, true, false
	}
	s.queue = dequeue(s.queue, n)
	return reset
}

// dequeue removes q's first n samples. An emptied queue that grew (a source
// lagging, an output learning) gives its memory back: in the steady state a
// queue holds a sample or two.
func dequeue(q []Sample, n int) []Sample {
	q = q[:copy(q, q[n:])]
	if len(q) == 0 && cap(q) > 4 {
		return nil
	}
	return q
}

// settleResets decides what the resets just consumed mean. A reset at
// timestamp r is the exporter's restart when every source that counts (not
// stale) reset at r or first counted at r (the samples of one scrape share
// its timestamp, whichever request or order they came in): a fixed
// exporter's counter restarts too, so the carry and the counts of the stale
// sources (absent since the restart) are dropped, and the output resets once.
// Otherwise the source reset on its own: the count it had stays in the sum,
// in the carry. A restart whose samples are consumed over several
// finalizations (a source was overdue) is recognized when its last reset is
// consumed: the carries parked meanwhile are dropped then.
func (m *shard) settleResets(o *output) {
	for _, p := range o.parked {
		if o.restartAt(p.t) {
			o.carry, o.st = 0, 0
			for _, s := range o.sources {
				if s.stale || (s.resetAt != p.t && s.bornAt != p.t) {
					s.has, s.v = false, 0
				}
				if s.has && s.st != 0 && (o.st == 0 || s.st < o.st) {
					o.st = s.st
				}
			}
			o.parked = o.parked[:0]
			return
		}
	}
	for _, p := range o.parked {
		o.carry += p.v
	}
	o.parked = o.parked[:0]
}

// restartAt reports whether every source that counts reset or first counted
// at r.
func (o *output) restartAt(r int64) bool {
	for _, s := range o.sources {
		if s.has && !s.stale && s.resetAt != r && s.bornAt != r {
			return false
		}
	}
	return true
}

// value is the output's current value; stale when no source counts.
func (o *output) value() (v float64, stale bool) {
	stale = true
	if o.min {
		v = math.Inf(1)
		for _, s := range o.sources {
			if s.has && !s.stale {
				v, stale = math.Min(v, s.v), false
			}
		}
		return v, stale
	}
	v = o.carry
	for _, s := range o.sources {
		if s.has {
			v += s.v
			if !s.stale {
				stale = false
			}
		}
	}
	return v, stale
}

func (m *shard) partition(part string) *partition {
	p := m.parts[part]
	if p == nil {
		p = &partition{waiting: map[*output]struct{}{}}
		m.parts[part] = p
	}
	return p
}

// list puts the output on its partition's lists: ready (samples to send, none
// in flight) and waiting (samples held for a source or the clock).
func (m *shard) list(o *output) {
	if o.gone {
		return
	}
	was := o.listed
	p := m.partition(o.part)
	if o.inflight == 0 && len(o.q) > 0 && o.listed&listReady == 0 {
		p.ready = append(p.ready, o)
		o.listed |= listReady
	}
	held := o.hasHeld()
	switch {
	case held && o.listed&listWaiting == 0:
		p.waiting[o] = struct{}{}
		o.listed |= listWaiting
	case !held && o.listed&listWaiting != 0:
		delete(p.waiting, o)
		o.listed &^= listWaiting
	}
	switch {
	case was == 0 && o.listed != 0:
		m.pending.Add(1)
	case was != 0 && o.listed == 0:
		m.pending.Add(-1)
	}
}

// attach puts the output's unsent samples on the transaction: the retries
// first, alone (the rest follows once they are answered), else all of them.
func (tx *mergeTx) attach(o *output, group int, emits []Emit) []Emit {
	if o.gone || o.inflight > 0 || len(o.q) == 0 {
		return emits
	}
	n := 0
	for n < len(o.q) && (n < o.tried || o.q[n].T <= tx.m.retryUntil) {
		n++
	}
	retry := n > 0
	if !retry {
		n = len(o.q)
	}
	o.inflight = n
	o.tried = max(o.tried, n)
	tx.attached = append(tx.attached, o)
	tx.retry = append(tx.retry, retry)
	return append(emits, Emit{Group: group, Labels: o.labels, Samples: o.q[:n:n], Retry: retry})
}

// collect appends to emits what the request carries from this shard: the
// outputs it finalized (Group: their add call), and those of its partition
// that were waiting for a request to ride on. shardedTx.Collect then writes
// the log before the request is answered.
func (tx *mergeTx) collect(emits []Emit) []Emit {
	m := tx.m
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	for g, o := range tx.groups {
		if o != nil {
			// The clock's decisions first (end of learning, overdue), so
			// that what they release rides in this request's own slot.
			m.advance(o, now)
			emits = tx.attach(o, g, emits)
		}
	}
	if p := m.parts[tx.part]; p != nil {
		ready := p.ready
		p.ready = nil
		for _, o := range ready {
			o.listed &^= listReady
			emits = tx.attach(o, -1, emits)
			if o.listed == 0 {
				m.pending.Add(-1)
			}
		}
		if !now.Before(p.nextScan) && len(p.waiting) > 0 {
			p.nextScan = now.Add(scanEvery)
			// In a fixed order (the outputs' age), so that two states fed
			// the same requests send the same requests.
			waiting := make([]*output, 0, len(p.waiting))
			for o := range p.waiting {
				waiting = append(waiting, o)
			}
			slices.SortFunc(waiting, func(a, b *output) int { return cmpInt(int64(a.id), int64(b.id)) })
			for _, o := range waiting {
				m.advance(o, now)
				emits = tx.attach(o, -1, emits)
			}
		}
		// Outputs attached here leave the ready list until Done.
		for _, o := range tx.attached {
			if o.listed&listReady != 0 {
				o.listed &^= listReady
				p.ready = slices.DeleteFunc(p.ready, func(x *output) bool { return x == o })
				if o.listed == 0 {
					m.pending.Add(-1)
				}
			}
		}
	}
	if m.now().Sub(m.lastGC) > time.Duration(m.cfg.IdleTimeout)/10 {
		m.gc(now)
	}
	return emits
}

// Done tells the state what the upstreams took of the transaction's
// samples: all of them or none for the request with the sender's series
// (ok), and, for the retries, taken[k] samples from the first of the k-th
// output attached as a retry (see MergeRun.Done). Taken samples leave the
// send queue; the others stay, in order, and go with a later request, as
// retries.
func (tx *mergeTx) Done(ok bool, taken []int) {
	if len(tx.attached) == 0 {
		return
	}
	m := tx.m
	m.mu.Lock()
	defer m.mu.Unlock()
	k := 0 // the next retry's entry in taken
	for i, o := range tx.attached {
		n := o.inflight
		o.inflight = 0
		took := 0
		switch {
		case tx.retry[i]:
			if k < len(taken) {
				took = min(max(taken[k], 0), n)
			}
			k++
		case ok:
			took = n
		}
		if took > 0 && took <= len(o.q) {
			last := o.q[took-1].T
			o.q = dequeue(o.q, took)
			o.tried = max(0, o.tried-took)
			m.logSent(o, last)
		}
		m.list(o)
	}
	tx.attached, tx.retry = nil, nil
}

// sent drops the queued samples up to t (replaying a log).
func (o *output) sent(t int64) {
	n := 0
	for n < len(o.q) && o.q[n].T <= t {
		n++
	}
	o.q = dequeue(o.q, n)
	o.tried = max(0, o.tried-n)
}

// gc forgets outputs whose every source has been silent for idle_timeout,
// that have nothing to send and carry no count of their own (a carry could
// not be rebuilt from the sources: forgetting it would be a fake reset). A
// forgotten output that comes back learns its sources again and sends the
// sum of their values, never at or before the last timestamp it had
// finalized. Partitions left empty are forgotten too.
func (m *shard) gc(now time.Time) {
	m.lastGC = now
	m.gcAt.Store(int64(stampOf(now.Add(time.Duration(m.cfg.IdleTimeout) / 10))))
	idle := time.Duration(m.cfg.IdleTimeout)
	for _, l := range m.outs {
		for _, o := range l {
			if o.inflight > 0 || len(o.q) > 0 || o.hasHeld() || o.carry != 0 || since(now, o.touched) <= idle {
				continue
			}
			m.logDrop(o)
			m.forget(o)
		}
	}
	for part, p := range m.parts {
		if len(p.ready) == 0 && len(p.waiting) == 0 {
			delete(m.parts, part)
		}
	}
}

// forget removes an idle output, keeping its last finalized timestamp.
func (m *shard) forget(o *output) {
	if len(m.forgotten) >= max(1, m.cfg.MaxSeries/mergeShards) { // max_series in all shards
		for k := range m.forgotten { // bounded: drop an arbitrary one
			delete(m.forgotten, k)
			break
		}
	}
	m.forgotten[outKey{o.part, o.labels.Hash()}] = o.f
	m.remove(o)
}

func (m *shard) remove(o *output) {
	k := outKey{o.part, o.labels.Hash()}
	l := slices.DeleteFunc(m.outs[k], func(x *output) bool { return x == o })
	if len(l) == 0 {
		delete(m.outs, k)
	} else {
		m.outs[k] = l
	}
	if o.listed != 0 {
		if p := m.parts[o.part]; p != nil {
			delete(p.waiting, o)
			p.ready = slices.DeleteFunc(p.ready, func(x *output) bool { return x == o })
		}
		o.listed = 0
		m.pending.Add(-1)
	}
	o.gone = true
	m.n--
	m.w.total.Add(-1)
	m.nsrc -= len(o.sources)
}
