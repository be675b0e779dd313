package relabel

import (
	"cmp"
	"iter"
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

	"github.com/rwfix/rwfix/remotewrite/series"
)

// Sample and Emit are the contract's (package series): the merge takes
// sources' samples and gives back what a request carries of its outputs.
type (
	Sample = series.Sample
	Emit   = series.Emit
)

// MergeTx is one request's use of the merge state; see Merger.Begin.
type MergeTx interface {
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
// (a source's value at T is its latest sample at or before T, 0 before its
// first sample — it did not exist yet; a source that went stale keeps its
// last count in the sum; for _created series: the smallest value of the live
// sources instead of the sum). The carry keeps the count of a source that
// reset on its own (its value dropped while the other sources did not), so
// the output never shows a fake reset; when every live source resets at one
// timestamp (the exporter restarted) the carry and the stale sources are
// dropped and the output resets once, like the real counter.
//
// Invariants, for every sequence of requests, answers, restarts and crashes
// (docs/collisions.md; proven by the tests and the fault simulation):
//
//   - I1 one value per timestamp: an output's sample at T is finalized once;
//     a re-send (after a failed send, a lost answer or a restart) carries the
//     same value, marked as a retry.
//   - I2 order: an output's samples reach the upstream strictly in order,
//     none overtaking one in flight.
//   - I3 exact: the value is the formula above, over every source that had a
//     sample at or before T; a source first seen after T counted 0 at T.
//   - I4 complete: there is a sample at every T at which any source has one,
//     except where the truth is unknowable — a source's count before its
//     first sample, for T before the horizon (see Merger.horizon: after a
//     start without state) or for a source the state knew before idle
//     clean-up; such timestamps are counted (rwfix_merge_unknown_samples_total).
//   - I5 no fake reset: the output decreases only when every live source
//     resets at one timestamp.
//
// One mechanism keeps them: every output is a small state machine with a
// frontier F, the last timestamp it has finalized. Source samples are queued
// per source; the next timestamp T (the smallest queued one) is finalized, in
// order, once
//
//   - every known source has been seen at or after T, or is stale, and
//   - birth_wait has passed since the first sample at T arrived: a source
//     born at T's scrape whose first sample travels on another shard of the
//     sender (Prometheus sends a shard's batch within batch_send_deadline)
//     has arrived by then, so no source can still appear for T;
//
// or when a known source is overdue (silent for longer than the wait bound,
// learned from the traffic: see waitBound). A sample that arrives for a
// timestamp its output had finalized anyway is counted late
// (rwfix_merge_late_samples_total) and counts from the next one on.
// What it says of the past (a reset, a stale marker) is still decided as
// in order: against what the output and its other sources were at its
// timestamp, not what they became since. The state keeps a few facts of
// that past for it: each source's first and last count, last reset and
// last stale marker; the output's last restart, whether that revived a
// dead output and (a side record, while a source may still send samples
// from before them) the dead spans of its last revivals and which sources
// each brought back, and the earliest reset its carry holds (receive's
// late path, settleResets, restartAt, awayAt, vanishedBeforeTheLife).
//
// A finalized sample joins the output's send queue; the queue rides on the
// request that finalized it, or, if the output already has samples in
// flight upstream or was finalized by the clock, on the next request (of the
// same partition: tenant) — so the samples of one output reach the upstream
// strictly in order, none skipped, and a request in flight is never
// overtaken. A send that fails keeps its samples queued: they are sent again,
// with the same values. Every state change is appended to a log in the data
// directory before the request that caused it is answered (see mergelog.go),
// so a restart, a SIGKILL or an OOM kill resumes with the exact state.
type shard struct {
	w   *Merger // the shared parts: ids, the output count, the log, the metrics
	mu  sync.Mutex
	cfg CollisionConfig
	now func() time.Time
	// outs holds the outputs by partition and label hash: one per key but
	// for the rare others (a hash collision, a retired output still sending
	// beside a new one, orphans after a reload), which more holds, in the
	// order they came; see link, delink, under and all.
	outs  map[outKey]*output
	more  map[outKey][]*output
	parts map[string]*partition
	// lastPart is the partition partition returned last, and its name:
	// the outputs a request lists are nearly all of its partition, whose
	// lookup then compares a string (mostly the very same) instead of
	// hashing it. Whatever takes a partition out of parts clears it
	// (forgetParts).
	lastPart     *partition
	lastPartName string
	// forgotten holds what is left of the outputs that idle GC forgot (see
	// tomb), in the order they were forgotten (forgottenQ, oldest first: the
	// one dropped when the set is full, the same in a replay of the log).
	forgotten  map[outKey]tomb
	forgottenQ []outKey
	// orphans are the outputs whose partition a reload changed, by label
	// hash, until a request of the new partition adopts them (retire.go).
	orphans map[uint64][]*output
	// lossGaps: for each output whose held timestamps lostTail finalized
	// unsent after a power loss, what a source's late sample before the
	// horizon must not count again (see lateBeforeHorizon), and the gaps
	// of earlier power losses, in which a late sample counts too.
	lossGaps map[*output]*lossGap
	// deadFrom: for each output whose last restart revived it dead
	// (outRevived), the dead spans of its last revivals in a row (at most
	// maxDeadSpans, oldest first): from when every source that counted was
	// away until the revival (see awayAt). A side record, not a field of
	// output: revivals are rare, and the output record keeps its size
	// class. An entry of an output no longer revived is not read.
	deadFrom map[*output][]deadSpan
	n        int // outputs
	nsrc     int // sources
	lastGC   time.Time
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
	scan       scanOrder // collect's, under mu
}

// deadSpan is the dead span of a revival: from when the output died (its
// last source that counted went stale) until the revival at to, and the
// sources the revival brought back (bit i: o.sources[i]; 0: not known, a
// log older than it, or sources past the 64th: those that reset at to).
type deadSpan struct {
	from, to int64
	back     uint64
}

// maxDeadSpans bounds the dead spans kept of an output's revivals in a row
// (each a LiteLLM restart with a failed scrape while a shard of the sender
// is behind): the oldest goes first.
const maxDeadSpans = 4

type outKey struct {
	part string
	h    uint64
}

// tomb is what the state keeps of an output that idle GC forgot: the last
// timestamp it finalized (if it comes back, it never sends at or before it)
// and the hashes of its sources' labels (if it comes back, it waits for each
// of them as for a known source, and a timestamp at which one of them has no
// count yet is unknowable, not a birth).
type tomb struct {
	f    int64
	srcs []uint64
}

type output struct {
	id     uint64
	part   string
	labels labels.Labels
	flags  outFlag // what it is and where it stands: outMin, outGone, ... (see is)
	listed uint8   // on the partition's lists: listReady, listWaiting
	// pre caches the running rules' preimage size for labels (see
	// shard.preimage), valid while preGen is the Merger's preGen.
	pre     int16
	preGen  uint32
	sources []*source
	// carried: the counts of sources that reset alone, kept in the sum
	// (see settleResets); nil, the usual case, when there is none: a
	// pointer, so that every output does not take 16 bytes for what few
	// hold. Read with carry, written with setCarry.
	carried *carried
	st      int64 // RW 2.0 start timestamp: the earliest since the last real reset
	f       int64 // frontier: last finalized timestamp (MinInt64: none)
	// lifeAt: the timestamp of its last restart (0: none known), when the
	// counts of its stale sources were dropped: a source's late samples
	// that went stale before it are of an earlier life (see
	// vanishedBeforeTheLife).
	lifeAt   int64
	q        []Sample
	inflight int32 // q[:inflight] rides on a request not yet answered
	tried    int32 // q[:tried] was sent before: a retry
	// pend is, for each timestamp queued by some source, when its first
	// sample arrived, in timestamp order: T is finalized no earlier than
	// birth_wait after it (see advance).
	pend    []pendT
	touched stamp
	// parked: the resets not settled yet (see settleResets); nil, the
	// usual case, when there is none: a pointer, not a slice header, so
	// that every output does not carry 24 bytes for what few hold.
	parked *[]parked
	// (The record takes 176 bytes, in the 176-byte size class: its yes/no
	// states are bits of flags, not a bool each, so that its small fields
	// fill two words. BenchmarkMergeStateMemory measures it.)
}

// carried is what an output carries: never 0 (an output carrying nothing
// has none).
type carried struct {
	// v: the counts of its sources that reset alone (a _created output:
	// the earliest creation time of those created again alone).
	v float64
	// t: the timestamp of the earliest reset v holds (0: unknown). A reset
	// consumed late at r before it restarts the output at r, and v, all
	// counted after r, is the new life's (see settleResets).
	t int64
}

// carry is what o carries (0: nothing) and the timestamp of the earliest
// reset it holds.
func (o *output) carry() (float64, int64) {
	if o.carried == nil {
		return 0, 0
	}
	return o.carried.v, o.carried.t
}

// setCarry sets what o carries; 0 is nothing.
func (o *output) setCarry(v float64, t int64) {
	switch {
	case v == 0:
		o.carried = nil
	case o.carried == nil:
		o.carried = &carried{v: v, t: t}
	default:
		o.carried.v, o.carried.t = v, t
	}
}

// outFlag is one yes/no state of an output, a bit of output.flags.
type outFlag uint8

const (
	// outMin: a _created series: the smallest value, not the sum.
	outMin outFlag = 1 << iota
	// outGone: forgotten (idle): not in the state any more.
	outGone
	// outRetire: no source left after a reload: leaves once its queue is
	// sent.
	outRetire
	// outLived: it finalized a sample to send in this life (since it was
	// created, or restored); before that, a start timestamp after its
	// frontier (from a tomb or fence) is its new life's, not a fake reset.
	outLived
	// outOrphan: its partition changed at a reload: the new one adopts it
	// (see retire.go).
	outOrphan
	// outOldPart: retired under a partition of an older scheme, which no
	// request names again (see Merger.queuedElsewhere).
	outOldPart
	// outBehind: made while its label set was fenced by retired outputs,
	// or sharing its label set with an output retired since
	// (behindRetired); it attaches nothing while one of them still has
	// samples to send.
	outBehind
	// outRevived: its last restart (lifeAt) was of a dead output (every
	// source stale): each source stale before it stayed away until it
	// (see awayAt).
	outRevived
)

// is reports whether o has the state f (each of them, if f holds several).
func (o *output) is(f outFlag) bool { return o.flags&f == f }

// set gives o the state f (each of them, if f holds several), or takes it
// away (v false).
func (o *output) set(f outFlag, v bool) {
	if v {
		o.flags |= f
	} else {
		o.flags &^= f
	}
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
func since(now, s stamp) time.Duration { return time.Duration(now - s) }

// pendT is a queued timestamp and the arrival of its first sample.
type pendT struct {
	t  int64
	at stamp
}

// parked is the count a source had before it reset, until settleResets
// decides whether it stays in the sum (carry) or not (real reset).
type parked struct {
	s *source
	v float64
	t int64 // the timestamp of the sample that dropped
	// recreated: the source came back after it vanished alone (not a drop
	// of its value)
	recreated bool
}

// parkedNow is the output's unsettled resets.
func (o *output) parkedNow() []parked {
	if o.parked == nil {
		return nil
	}
	return *o.parked
}

// park adds a reset to settle.
func (o *output) park(p parked) {
	if o.parked == nil {
		o.parked = new([]parked)
	}
	*o.parked = append(*o.parked, p)
}

const (
	listReady   = 1
	listWaiting = 2
)

type source struct {
	// idOrHash holds its id once it is seen (see id) and, while it is
	// unseen (a tomb's placeholder: no id yet, its labels unknown), the
	// hash of its labels (see tombHash): never both, so one field.
	idOrHash uint64
	labels   labels.Labels
	queue    heldQueue // received, not yet consumed (t > the output's frontier)
	lastT    int64     // last received timestamp (MinInt64: none)
	firstT   int64     // first received timestamp (MinInt64: none yet)
	firstST  int64     // the RW 2.0 start timestamp of that first sample (0: none)
	arrival  stamp
	v        float64 // last non-stale value
	st       int64   // start timestamp of the last consumed sample
	staleAt  int64   // its timestamp (see stale)
	// countT: the timestamp of its last consumed count (a stale marker
	// after it: staleAt). A creation time after countT was never counted.
	// MinInt64: unknown (restored from a log older than it).
	countT int64
	// recreatedAt: the timestamp of its sample back after a gap whose
	// _created series says it was created again (decided and logged before
	// the finalization that consumes it, so that a replay decides alike)
	recreatedAt int64
	resetAt     int64 // timestamp at which it last reset
	bornAt      int64 // timestamp of its first count (after joining or a real reset)
	// fam is familyKey(labels), computed once (famState: 0 not yet, 1 fam
	// holds it, 2 labels have no family); labels set again reset famState.
	fam      uint64
	famState uint8
	lastStl  bool // the last received sample is a stale marker
	// fromTomb: known from the output's tomb (it counted before idle GC):
	// waited for before it is seen, and unknowable before its first sample.
	// Until it is seen (unseen), its labels are unknown and the hash in
	// idOrHash names them.
	fromTomb bool
	// unseen: a placeholder of a tomb not seen yet, with no id or labels:
	// idOrHash holds the hash of its labels.
	unseen bool
	has    bool // v holds a count
	stale  bool // the last consumed sample is a stale marker
	// alone: it went stale while another counted source of the output did
	// not (LiteLLM removed the series): if it comes back, it was created
	// again, from zero, whatever its value.
	alone bool
	// existed: its first sample, consumed by the finalization under way,
	// said a creation time at or before the output's frontier (decided and
	// logged before that finalization, as recreatedAt, so that a replay
	// decides alike): it lived before the merge saw it.
	existed bool
	// (The record takes 160 bytes, in the 160-byte size class;
	// BenchmarkMergeStateMemory measures it.)
}

// id is the source's id: 0 for a placeholder of a tomb not seen yet.
func (s *source) id() uint64 {
	if s.unseen {
		return 0
	}
	return s.idOrHash
}

// tombHash is, for a placeholder of a tomb not seen yet, the hash of its
// labels the tomb gave; 0 for a source seen.
func (s *source) tombHash() uint64 {
	if s.unseen {
		return s.idOrHash
	}
	return 0
}

// setTombHash makes s a placeholder of a tomb not seen yet, named by the
// hash h of its labels. A hash of 0 names none (a snapshot writes 0 for a
// source seen): s is left as it is.
func (s *source) setTombHash(h uint64) {
	if h != 0 {
		s.idOrHash, s.unseen = h, true
	}
}

// family is familyKey(s.labels), computed once.
func (s *source) family() (uint64, bool) {
	if s.famState == 0 {
		s.famState = 2
		if k, ok := familyKey(s.labels); ok {
			s.fam, s.famState = k, 1
		}
	}
	return s.fam, s.famState == 1
}

// partition holds the outputs of one tenant (the values of the upstreams'
// forward_headers) that wait for a request to ride on.
type partition struct {
	ready []*output
	// spare is the array ready had before the last collect took it: ready
	// starts on it again, so that the list does not grow from nothing
	// with every request.
	spare    []*output
	waiting  map[*output]struct{}
	nextScan time.Time
}

type mergeMetrics struct {
	collisions, merged, emitted, full, overdue, unknown, late, logErrors prometheus.Counter
	fenced, ambiguous, unknownCounts                                     prometheus.Counter
	hold                                                                 prometheus.Observer
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
	m := &shard{w: w, cfg: cfg, now: time.Now, outs: map[outKey]*output{}, parts: map[string]*partition{}, forgotten: map[outKey]tomb{}, metrics: w.metrics}
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
	for k := range m.outs {
		if k.h != h {
			continue
		}
		for o := range m.under(k) {
			if labels.Equal(o.labels, out) {
				return true
			}
		}
	}
	return false
}

// find returns the output of partition part with labels out (hash h), nil
// when there is none. An orphan is not one: it is reached through adopt,
// which sees the label set's orphans of every partition (an orphan whose
// partition the new scheme names again may be another sender's: see
// retire.go). A retired output is: while it still sends its queue, a new
// output of its label set beside it would send behind or before it, out of
// order (soak: TestSimulation/all seed 380). But an output in the merge
// comes first: an orphan adopted beside a retired output of an older scheme
// (see output) is the one that counts the label set, and the retired one
// only sends its queue.
func (m *shard) find(part string, out labels.Labels, h uint64) *output {
	k := outKey{part, h}
	o := m.outs[k]
	if o != nil && (o.is(outOrphan) || !labels.Equal(o.labels, out)) {
		o = nil
	}
	if (o == nil || o.is(outRetire)) && len(m.more) > 0 {
		for _, x := range m.more[k] {
			if !x.is(outOrphan) && labels.Equal(x.labels, out) {
				if !x.is(outRetire) {
					return x
				}
				if o == nil {
					o = x
				}
			}
		}
	}
	return o
}

// link adds o to the outputs under k (after those there).
func (m *shard) link(k outKey, o *output) {
	if _, ok := m.outs[k]; !ok {
		m.outs[k] = o
		return
	}
	if m.more == nil {
		m.more = map[outKey][]*output{}
	}
	m.more[k] = append(m.more[k], o)
}

// delink removes o from the outputs under k.
func (m *shard) delink(k outKey, o *output) {
	l := m.more[k]
	switch {
	case m.outs[k] != o:
		l = slices.DeleteFunc(l, func(x *output) bool { return x == o })
	case len(l) > 0:
		m.outs[k] = l[0]
		l = slices.Delete(l, 0, 1)
	default:
		delete(m.outs, k)
	}
	if len(l) == 0 {
		delete(m.more, k)
	} else {
		m.more[k] = l
	}
}

// under yields the outputs under k, in the order they came.
func (m *shard) under(k outKey) iter.Seq[*output] {
	return func(yield func(*output) bool) {
		o, ok := m.outs[k]
		if !ok {
			return
		}
		more := slices.Clone(m.more[k]) // before yield, which may unlink
		if !yield(o) {
			return
		}
		for _, o := range more {
			if !o.is(outGone) && !yield(o) {
				return
			}
		}
	}
}

// all yields every output of the shard. The loop's body may forget the
// output it is given (unlink it), and nothing else: an output it linked or
// moved under another key (a Go map walk may or may not reach a key added
// during it) could be yielded again or not at all.
func (m *shard) all() iter.Seq[*output] {
	return func(yield func(*output) bool) {
		for k, o := range m.outs {
			if len(m.more) == 0 || len(m.more[k]) == 0 {
				if !yield(o) {
					return
				}
				continue
			}
			for o := range m.under(k) {
				if !yield(o) {
					return
				}
			}
		}
	}
}

// waitBound is how long an output waits for a known source that has not
// reported at a timestamp before taking the source at its latest value:
// twice the scrape interval (learned from the traffic) plus birth_wait (the
// sender's batching and network), at most collision.max_wait; max_wait until
// the interval is known.
func (m *shard) waitBound() time.Duration {
	if m.interval <= 0 {
		return time.Duration(m.cfg.MaxWait)
	}
	b := 2*time.Duration(m.interval)*time.Millisecond + m.birthWait()
	return min(b, time.Duration(m.cfg.MaxWait))
}

// birthWait is how long after the first sample at a timestamp arrived the
// output waits for sources it does not know yet (collision.birth_wait, at
// most max_wait): the samples of one scrape are appended to the sender's WAL
// together and each shard sends its batch within batch_send_deadline, so a
// source born at that scrape has arrived by then unless its shard is stuck
// (then it is counted late).
func (m *shard) birthWait() time.Duration {
	return min(time.Duration(m.cfg.BirthWait), time.Duration(m.cfg.MaxWait))
}

// Pending reports, without locking, whether some output waits for a request
// to ride on (or for the clock): then every request should Begin and
// Collect, even one that carries no source.
func (m *shard) Pending() bool { return m.pending.Load() > 0 }

// scanOrder puts a partition's waiting outputs in the order of their ids
// (their age) for collect's scan. Each id goes into a key with its
// output's place in the list below it, and the keys are sorted as
// integers: the sort neither calls a comparison nor reads an output (a
// cache miss each) to compare two. Its arrays are made for each scan and
// let go after it: kept from one scan to the next, they held 24 bytes per
// waiting output for good (BenchmarkMergeStateMemory: 25 bytes per output
// more), for 0.5% of the merge benchmark's instructions.
type scanOrder struct {
	keys       []uint64
	outs, byID []*output
}

// scanPlaceBits is how many low bits of a key hold the output's place;
// the id takes the others (an id is never near 2⁴⁴, but the order does not
// hang on it: see byAge).
const scanPlaceBits = 20

// byAge returns the outputs of set in the order of their ids. The list is
// valid until release.
func (s *scanOrder) byAge(set map[*output]struct{}) []*output {
	// New lists, even if the last scan never got to release (a panic in
	// it, recovered by the server): its outputs are not this one's.
	s.keys, s.outs, s.byID = make([]uint64, 0, len(set)), make([]*output, 0, len(set)), nil
	packed := len(set) <= 1<<scanPlaceBits
	for o := range set {
		packed = packed && o.id < 1<<(64-scanPlaceBits)
		s.keys = append(s.keys, o.id<<scanPlaceBits|uint64(len(s.outs)))
		s.outs = append(s.outs, o)
	}
	if !packed {
		slices.SortFunc(s.outs, func(a, b *output) int { return cmp.Compare(int64(a.id), int64(b.id)) })
		return s.outs
	}
	slices.Sort(s.keys) // ids are unique: the places never decide
	s.byID = make([]*output, len(s.keys))
	for i, k := range s.keys {
		s.byID[i] = s.outs[k&(1<<scanPlaceBits-1)]
	}
	return s.byID
}

// release lets the lists go, so that no output stays alive in them.
func (s *scanOrder) release() { *s = scanOrder{} }

// mergeTx is one request's transaction on one shard (see shardedTx).
type mergeTx struct {
	m        *shard
	part     string
	gen      uint64    // see shardedTx
	stale    bool      // an Add found the state reconfigured (see shardedTx.stale)
	groups   []*output // by Add call; nil when not merged
	attached []*output
	retry    []bool // by attached
	// waited: outputs that attach kept back behind a retired queue
	// (outBehind); collect lists them again, so that a later request
	// or the idle flush sends them once that queue is settled.
	waited []*output
	// sources is how many sources the last Add's output has (0: not
	// merged): more than one, and its sources are summed (a collision).
	sources int
	// room is how many emits the request likely carries (its Add calls
	// over every shard; 0: unknown): the first emit attached makes the
	// list with room for them, where growing it by doubling allocated it
	// about twice over. A request that emits nothing allocates nothing.
	room int
	// lists is where groups, attached and retry came from (nil: made
	// here), given back by release.
	lists *shardLists
}

// release ends the transaction's use of its lists: they go back for
// another request's (see shardLists), cleared of its outputs, if they came
// from there. Done calls it: the request is over.
func (tx *mergeTx) release() {
	if sl := tx.lists; sl != nil && cap(tx.groups) <= maxPooledGrouping && cap(tx.attached) <= maxPooledGrouping {
		clear(tx.groups)
		clear(tx.attached)
		sl.groups, sl.attached, sl.retry = tx.groups[:0], tx.attached[:0], tx.retry[:0]
		shardListsPool.Put(sl)
	}
	tx.lists, tx.groups, tx.attached, tx.retry = nil, nil, nil, nil
}

// add folds one request's float samples for the sources of out (label
// hash h) into the shard. It returns false when the state is full: the caller must then
// forward the sources unmerged and unrepaired.
func (tx *mergeTx) add(out labels.Labels, h uint64, sources []labels.Labels, samples [][]Sample) bool {
	m := tx.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if tx.gen != 0 && tx.gen != m.w.gen.Load() {
		// A request on the route of the configuration a reload replaced,
		// merging after the reload reconfigured the state: it would bring
		// back an output the reload retired (or adopt an orphan into a
		// partition no request names again), whose samples would then
		// meet the label set's raw ones. Nothing is taken: the request is
		// answered 503, and sent again to the new configuration.
		tx.stale = true
		tx.groups = append(tx.groups, nil)
		tx.sources = 0
		return true
	}
	// The clock is read once, and turned into a stamp once: every wait
	// below compares stamps, which costs a subtraction where a time.Time
	// costs a call (a clock without a monotonic reading, as a test's or
	// the simulation's, several).
	wall := m.now()
	now := stampOf(wall)
	o := m.output(tx.part, out, h, wall)
	if o == nil {
		tx.groups = append(tx.groups, nil)
		tx.sources = 0
		return false
	}
	tx.groups = append(tx.groups, o)
	o.touched = now
	// Every sample of every source, each source's in timestamp order (a
	// request may carry one series several times).
	for i, ls := range sources {
		s := m.source(o, ls, now)
		if i >= len(samples) {
			continue
		}
		smp := samples[i]
		if !slices.IsSortedFunc(smp, func(a, b Sample) int { return cmp.Compare(a.T, b.T) }) {
			smp = slices.Clone(smp)
			slices.SortStableFunc(smp, func(a, b Sample) int { return cmp.Compare(a.T, b.T) })
		}
		for _, p := range smp {
			m.receive(o, s, p, now)
		}
	}
	m.advance(o, now)
	tx.sources = len(o.sources)
	return true
}

// output finds or creates the output; nil when the state is full. An
// output that idle GC forgot comes back even when the state is full: its
// sources forwarded unmerged would make its counter drop (a fake reset).
// The state then holds at most max_series outputs plus the forgotten ones
// that came back, which are bounded by max_series too.
func (m *shard) output(part string, out labels.Labels, h uint64, now time.Time) *output {
	o := m.find(part, out, h)
	if o != nil && (!o.is(outRetire) || !m.oneOrphan(out, h)) {
		return o
	}
	if o != nil {
		// A retired output of an older scheme, still sending its queue,
		// under the partition the new scheme names again — and the label
		// set has an orphan: the output that merged it under the scheme
		// just replaced, later than the retired one (its frontier is past
		// the retirement's fence), its sums perhaps still queued. The
		// orphan is adopted and goes on counting; the retired output only
		// sends its queue, first (the adopted one waits behind it, as a
		// new output of the label set does). Taken back into the merge
		// instead, the retired output would send the request's samples
		// while the orphan, never adopted, held its queue: sent later, by
		// the idle flush, behind them, out of order and lost (sim all seed
		// 37001067: an upstream outage across reloads to keep_distinct,
		// forward_headers on, the merge back, forward_headers off). With
		// several orphans (several tenants) nothing changes: which one is
		// whose cannot be told.
		a := m.adopt(part, out, h, now)
		if a == nil {
			return o
		}
		if fc, fenced := m.w.fencedAt(hashLabels(out)); fenced && len(fc.outs) > 0 {
			a.set(outBehind, true) // attach clears it once their queues are settled
		}
		return a
	}
	if o := m.adopt(part, out, h, now); o != nil {
		return o
	}
	// adopt may have retired several orphans of the label set, this
	// partition's among them (the new scheme names it again): that one is
	// found now, as by the next request. A new output beside it would send
	// the label set twice (all seed 12010375).
	if o := m.find(part, out, h); o != nil {
		return o
	}
	if _, back := m.forgotten[outKey{part, h}]; back {
		m.w.total.Add(1)
	} else if !m.w.reserve(m.cfg.MaxSeries) {
		m.metrics.full.Inc()
		return nil
	}
	o = m.newOutput(m.w.nextID.Add(1), part, out, stampOf(now)) // counted above
	fc, fenced := m.w.fencedAt(hashLabels(out))
	// Retired outputs of its label set may still be sending: it waits for
	// them (see attach), or its samples could reach the upstream first and
	// put theirs out of order, refused (all seed 19003517: two orphans
	// retired at an adoption, one still sending an outage's backlog).
	o.set(outBehind, fenced && len(fc.outs) > 0)
	if fenced && fc.f > o.f {
		// The label set was retired (another partition, before a reload),
		// or went out raw while the state was full: its samples up to f
		// are not this output's.
		o.f = fc.f
	}
	m.logNewOutput(o)
	return o
}

// oneOrphan reports whether the label set out (hash h) has exactly one
// orphan, which adopt would move.
func (m *shard) oneOrphan(out labels.Labels, h uint64) bool {
	n := 0
	for _, o := range m.orphans[h] {
		if labels.Equal(o.labels, out) {
			n++
		}
	}
	return n == 1
}

// newOutput adds an output to the shard; the caller counts it in w.total.
// An output that was forgotten takes back its frontier and waits for its
// sources as known ones (see tomb).
func (m *shard) newOutput(id uint64, part string, out labels.Labels, now stamp) *output {
	o := &output{id: id, part: part, labels: out, f: math.MinInt64, touched: now}
	o.set(outMin, isCreated(out))
	k := outKey{part, out.Hash()}
	if tb, ok := m.forgotten[k]; ok {
		o.f = tb.f // nothing at or before what it sent then
		for _, h := range tb.srcs {
			o.sources = append(o.sources, m.placeholder(h, now))
		}
		delete(m.forgotten, k) // forgottenQ drops the key lazily
	}
	m.link(k, o)
	m.n++
	return o
}

// placeholder is a source known from a tomb by the hash of its labels.
func (m *shard) placeholder(h uint64, now stamp) *source {
	m.nsrc++
	s := &source{fromTomb: true, lastT: math.MinInt64, firstT: math.MinInt64, arrival: now,
		resetAt: math.MinInt64, bornAt: math.MinInt64, recreatedAt: math.MinInt64}
	s.setTombHash(h)
	return s
}

// source finds or adds the source with labels ls.
func (m *shard) source(o *output, ls labels.Labels, now stamp) *source {
	for _, s := range o.sources { // few: no hashing
		if !s.unseen && labels.Equal(s.labels, ls) {
			return s
		}
	}
	s := m.newSource(o, m.w.nextID.Add(1), ls, now)
	m.logNewSource(o, s)
	// A retired output whose queue is not sent yet is found when the
	// merge is back (a second output beside it would send out of order:
	// all seed 380); with a source again it is in the merge again, not to
	// be forgotten with what it now holds once its old queue is sent (all
	// seed 5000090). A replay, which knows no retirement, keeps it alike.
	// Its partition is named again: not of an older scheme any more
	// (outOldPart), which the replay also clears at this record, so that a
	// start does not take it for still retired (see retireOne).
	m.backInTheMerge(o)
	return s
}

// backInTheMerge takes back into the merge an output a reload retired, which
// a request feeds again (a source added, or one it kept: see receive). It
// waits, as a new output of its label set does (output), for the other
// retired outputs of the label set that still have samples to send (another
// partition's, an older scheme's): its sums reaching the upstream first
// would put theirs out of order, refused for good (an adversarial review:
// TestOutputFedAgainWaitsForTheOtherRetiredQueue). outBehind is not in the
// log; after a restart the start's retirement marks it again
// (behindRetired).
func (m *shard) backInTheMerge(o *output) {
	if o.is(outRetire) && !m.replay {
		if fc, fenced := m.w.fencedAt(hashLabels(o.labels)); fenced && len(fc.outs) > 0 {
			o.set(outBehind, true)
		}
	}
	o.set(outRetire|outOldPart, false)
}

// newSource adds the source with labels ls to o, or gives a placeholder
// with the same hash its labels and id.
func (m *shard) newSource(o *output, id uint64, ls labels.Labels, now stamp) *source {
	if labels.Equal(ls, o.labels) {
		// The genuine series: one memory for its labels and the output's
		// (the output may have been made by another source, with labels
		// built by its rewrite), which the decision cache then shares too
		// (decisionCache.recount), so that later comparisons of the two
		// are a pointer's.
		ls = o.labels
	}
	for _, s := range o.sources {
		if s.unseen && s.tombHash() == ls.Hash() {
			s.idOrHash, s.unseen, s.labels, s.arrival, s.famState = id, false, ls, now, 0
			return s
		}
	}
	s := &source{idOrHash: id, labels: ls, lastT: math.MinInt64, firstT: math.MinInt64, arrival: now,
		resetAt: math.MinInt64, bornAt: math.MinInt64, recreatedAt: math.MinInt64}
	if len(o.sources) > 0 && !m.replay {
		m.metrics.collisions.Inc()
	}
	o.sources = append(o.sources, s)
	m.nsrc++
	return s
}

// receive queues one source sample. A sample at or before the source's
// latest is a sender's retry (or a duplicate series): ignored.
func (m *shard) receive(o *output, s *source, p Sample, now stamp) {
	s.arrival = now
	if p.T <= s.lastT {
		return
	}
	if o.is(outRetire) || o.is(outOldPart) {
		// A reload that changed the partitions retired the output with
		// sources left, and the new scheme names its partition again: a
		// request feeds it through them, and it is in the merge again, as
		// when a source is added (source) — not to be forgotten with what
		// it holds once its old queue is sent, nor retired again by a
		// start (retireOne). The replay clears outOldPart at the same sample.
		m.backInTheMerge(o)
	}
	if o.is(outMin) && !value.IsStaleNaN(p.V) {
		if k, ok := s.family(); ok {
			m.w.created.saw(k, p.T, p.V)
		}
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
		s.firstT, s.firstST = p.T, p.ST
		if value.IsStaleNaN(p.V) && !m.replay {
			// A stale marker follows a sample this state never saw (the
			// merge was off when it came: a reload brought the merge back
			// after it; or a start without state): the series counted,
			// by how much is unknown. The output goes on from its other
			// sources without that count (docs/collisions.md, Reloads).
			m.metrics.unknownCounts.Inc()
		}
	}
	s.lastT, s.lastStl = p.T, value.IsStaleNaN(p.V)
	if p.T <= o.f {
		// The output already finalized this timestamp without it (the
		// source is new, or was overdue): it counts from the next one on.
		if !m.replay {
			m.metrics.late.Inc()
			m.lateBeforeHorizon(o, p.T)
		}
		s.queue.push(p)
		if m.consume(o, s, s.queue.len()) {
			m.settleResets(o)
		}
		m.vanishedBeforeTheLife(o, s)
		return
	}
	s.queue.push(p)
	o.arrived(p.T, now)
}

// vanishedBeforeTheLife drops the count of s when a late sample (at a
// timestamp its output had finalized without it: its shard of the sender
// was behind) took it stale before every other source that counts first
// counted. When s vanished, nothing else of the output counted: the output
// was dead, and the sources that count now were born while s stayed away —
// in order, finalize would have restarted the output at that birth (revived:
// the ambiguous restart, counted) and dropped the count of s. Consumed late,
// it would stay in the sum (or the smallest creation time) of a life it is
// not part of, and if s comes back created again, it would be carried (sim
// all seed 25003954: the 500's samples of the life before LiteLLM's restart
// came after a power loss, behind the None born after the restart). If s
// comes back, it counts from there, as a source born then.
func (m *shard) vanishedBeforeTheLife(o *output, s *source) {
	if !s.has || !s.stale {
		return
	}
	// Or the output restarted after s vanished: in order, that restart
	// dropped the count of s, stale then (a review of seed 25003954's fix:
	// the None counted before LiteLLM's restart too, and came back created
	// again, so its bornAt is its first life's).
	if o.lifeAt <= s.staleAt {
		other := false
		for _, x := range o.sources {
			if x == s || !x.has {
				continue
			}
			if x.bornAt <= s.staleAt {
				return // x counted when s vanished (or may have)
			}
			other = true
		}
		if !other {
			return // nothing counts since: a source back later decides (revived)
		}
	}
	if !m.replay {
		m.metrics.ambiguous.Inc()
	}
	st := s.st
	s.has, s.v, s.st, s.alone = false, 0, 0, false
	if st != 0 && o.st == st && o.carried == nil {
		// The start timestamp was the old life's (consume took it): the
		// earliest of the sources that count, as restart takes it.
		o.st = 0
		for _, x := range o.sources {
			if x.has && x.st != 0 && (o.st == 0 || x.st < o.st) {
				o.st = x.st
			}
		}
	}
}

// arrived records when the first sample at t arrived (pend is in timestamp
// order; samples mostly come in order, so this appends).
//
// An entry stands for every queued timestamp after the entry before it (see
// arrivedAt), so a timestamp later than the last entry's, arriving in the
// same pendQuantum of the clock, extends that entry instead of adding one:
// its arrival becomes the entry's, the latest of the run, so each timestamp
// of the run waits from no earlier than its own arrival, and at most
// pendQuantum longer. A timestamp inside a run gets an entry of its own (it
// may not have been queued before), which again only makes the earlier ones
// wait longer. Without it an output at a birth held one entry per queued
// timestamp: a sender catching up (or the load benchmark's rounds, a few
// per second) held a third of the held samples' memory in pend.
func (o *output) arrived(t int64, at stamp) {
	i := len(o.pend)
	if i > 0 && o.pend[i-1].t < t && o.pend[i-1].at/pendQuantum == at/pendQuantum {
		o.pend[i-1] = pendT{t: t, at: at}
		return
	}
	for i > 0 && o.pend[i-1].t >= t {
		if o.pend[i-1].t == t {
			return
		}
		i--
	}
	o.pend = slices.Insert(o.pend, i, pendT{t: t, at: at})
}

// pendDone forgets the arrivals of the timestamps up to t, finalized.
func (o *output) pendDone(t int64) {
	n := 0
	for n < len(o.pend) && o.pend[n].t <= t {
		n++
	}
	if n > 0 {
		o.pend = o.pend[:copy(o.pend, o.pend[n:])]
		if len(o.pend) == 0 && cap(o.pend) > 4 {
			o.pend = nil
		}
	}
}

// pendQuantum is how much of the clock one pend entry's arrivals may span:
// scanEvery, the granularity at which waiting outputs are checked anyway.
const pendQuantum = stamp(scanEvery)

// arrivedAt is when the first sample at t arrived (pend's first entry at or
// after t: a timestamp queued by a source but recorded before a restart
// counts from the restart).
func (o *output) arrivedAt(t int64) (stamp, bool) {
	for _, p := range o.pend {
		if p.t >= t {
			return p.at, true
		}
	}
	return 0, false
}

func (o *output) hasHeld() bool {
	for _, s := range o.sources {
		if s.queue.len() > 0 {
			return true
		}
	}
	return false
}

// next is the smallest queued timestamp, and whether there is one.
func (o *output) next() (int64, bool) {
	t, ok := int64(math.MaxInt64), false
	for _, s := range o.sources {
		if q, ok1 := s.queue.first(); ok1 && q < t {
			t, ok = q, true
		}
	}
	return t, ok
}

// advance finalizes every timestamp it can, in order, and takes the clock's
// decisions: the birth wait, overdue sources. Each finalized timestamp is
// logged with whether it was sent, so that a replay of the log makes the
// same decisions without the clock.
func (m *shard) advance(o *output, now stamp) {
	for {
		t, ok := o.next()
		if !ok {
			break
		}
		if !o.complete(t) || !m.born(o, t, now) {
			if !m.overdue(o, t, now) {
				break
			}
			m.metrics.overdue.Inc()
		}
		if at, ok := o.arrivedAt(t); ok {
			m.metrics.hold.Observe(since(now, at).Seconds())
		}
		if m.inLossGap(o, t) {
			// What lostTail left held: unsent, counted once in the gap.
			m.lateBeforeHorizon(o, t)
			m.finalize(o, t, false)
			continue
		}
		emit := o.knowable(t, m.w.horizon, m.preimage(o), m.w.powerLoss)
		if !emit {
			m.metrics.unknown.Inc()
		}
		m.finalize(o, t, emit)
	}
	m.list(o)
}

// born reports whether birth_wait has passed since the first sample at t
// arrived: no source unknown to the output can still bring a sample at t.
func (m *shard) born(o *output, t int64, now stamp) bool {
	if n := m.preimage(o); n > 0 && o.live() >= n && !o.returning() && !m.awaitsCreation(o, t, now) {
		return true // every possible source is known, and none is stale
	}
	at, ok := o.arrivedAt(t)
	return (!ok || since(now, at) >= m.birthWait()) && m.senderSettled(o, now)
}

// senderSettled reports whether the sender of o's partition has not been
// retrying for birth_wait plus its longest backoff (see Merger.Retrying); an
// orphan's sender may be any partition's (see Merger.settledAll).
func (m *shard) senderSettled(o *output, now stamp) bool {
	if o.is(outOrphan) {
		return m.w.settledAll(now, m.birthWait())
	}
	return m.w.settled(o.part, now, m.birthWait())
}

// awaitsCreation reports whether the output's value at t hangs on a
// creation time not in yet. A live source's sample at t that does not drop
// may still be a series created again — LiteLLM restarted between two
// scrapes, leaving no gap, and that source is back at (or past) its old
// count already — and only its _created sample of the same scrape, which
// travels on its own shard of the sender, says so. That matters when the
// value at t keeps a count beyond the live sources' own: another source's
// sample at t drops (a restart resets the output; a reset alone is
// carried), a source that counted is stale or goes stale at t (its count is
// kept only if the exporter did not restart), or the output carries counts
// of resets alone. Then each such live source's creation time at t is
// waited for: the birth wait (or the sender's retries) bounds the wait when
// it never comes. A family never seen yet (its _created samples all behind,
// on a shard still draining a backlog: sim upstream seed 1000557) is waited
// for at a drop or a source going stale at t (rare; a shard whose answer
// was lost is behind while rwfix sees no retry), while the sender retries
// (its shards are behind) or when another source of the output said
// creation times (the series of one exporter have them alike); otherwise
// (a carried count alone) a source without any waits for nothing.
func (m *shard) awaitsCreation(o *output, t int64, now stamp) bool {
	if o.is(outMin) || len(o.sources) < 2 {
		return false
	}
	kept, at := o.carried != nil, false // at: a source drops or goes stale at t
	for _, s := range o.sources {
		if at {
			break // kept too: no further creation time need be looked up
		}
		switch {
		case !s.has:
		case s.stale:
			kept = true
		case s.queue.len() > 0 && s.queue.s[0].T == t:
			p := s.queue.s[0]
			if value.IsStaleNaN(p.V) || p.V < s.v || m.createdAgainAt(o, s, t) {
				kept, at = true, true
			}
		}
	}
	if !kept {
		return false
	}
	c := &m.w.created
	// Whether a family never seen is awaited: at a drop or a source going
	// stale (rare: the wait costs little there), while the sender retries,
	// or when another source said creation times.
	unseen := at || !m.senderSettled(o, now)
	for _, s := range o.sources {
		if unseen {
			break
		}
		if k, ok := s.family(); ok && c.known(k) {
			unseen = true
		}
	}
	for _, s := range o.sources {
		// A stale source back at t is asked too: whether it goes on or was
		// created again decides whether the counts kept are the same life's
		// (see revived). born does not ask for a returning output (it waits
		// the birth wait), lostTail does (sim all seed 25005013).
		if !s.has || s.queue.len() == 0 || s.queue.s[0].T != t {
			continue
		}
		if p := s.queue.s[0]; value.IsStaleNaN(p.V) || p.V < s.v {
			continue // a drop is a reset whatever its creation time
		}
		if k, ok := s.family(); ok && c.awaited(k, t, unseen) {
			return true
		}
	}
	return false
}

// createdAgainAt reports whether the live source s, with a sample at t, was
// created again by t as its creation time already says: a reset as sure as
// a drop, which the other live sources' creation times tell from LiteLLM's
// restart (every source reset: the output restarts) — a restart between two
// scrapes can bring each source back at its old count (sim normal seed
// 5000129: both back at 1, one's _created sample in first).
func (m *shard) createdAgainAt(o *output, s *source, t int64) bool {
	k, ok := s.family()
	if !ok {
		return false
	}
	// Any other creation time than before, also one at or before the
	// frontier (recreated counts that one unknown): what matters here is
	// only that the value at t may hang on it.
	again, earlier := m.w.created.changed(k, max(s.bornAt, s.resetAt), o.f+1, t)
	return again || earlier
}

// live is the number of sources seen whose last sample is not a stale
// marker. A stale source (LiteLLM's expired series, a failed scrape) can
// come back at any scrape, on any shard, like a source being born; so can a
// source known without a sample yet (a SIGKILL kept its record and lost its
// first sample's, a tomb's placeholder).
func (o *output) live() int {
	n := 0
	for _, s := range o.sources {
		if s.lastT != math.MinInt64 && !s.lastStl {
			n++
		}
	}
	return n
}

// recreated marks (and logs) the sources of o whose first sample at or
// before t has a creation time (its _created series) other than their last
// one: created again, whatever their value; and the sources first seen
// there whose creation time is at or before the output's frontier: they
// existed before (see replaced).
func (m *shard) recreated(o *output, t int64) {
	if o.is(outMin) {
		// A _created output's sources say their creation time as their
		// value: one first seen whose creation time is at or before the
		// frontier existed before, as for its _total output (the two
		// decide alike: no replacement, the earlier creation time kept).
		for _, s := range o.sources {
			if p := s.queue.s; !s.has && !s.existed && len(p) > 0 && p[0].T <= t && !value.IsStaleNaN(p[0].V) && p[0].V*1000 <= float64(o.f) {
				s.existed = true
				m.logExisted(s)
			}
		}
		return
	}
	for _, s := range o.sources {
		if !s.has {
			// First seen: whether it existed before the output's frontier.
			if p := s.queue.s; !s.existed && len(p) > 0 && p[0].T <= t && !value.IsStaleNaN(p[0].V) {
				if k, ok := s.family(); ok && m.w.created.before(k, p[0].T, o.f) {
					s.existed = true
					m.logExisted(s)
				}
			}
			continue
		}
		// Its last creation time: before its gap (after its last count:
		// the scrape of its stale marker may have been one after a
		// creation, sim all seed 30002069), or at the output's last
		// timestamp (a restart between two scrapes leaves no gap).
		before := o.f + 1
		if s.stale {
			before = s.staleAt
			if s.countT != math.MinInt64 {
				before = s.countT + 1
			}
		}
		for _, p := range s.queue.s {
			if p.T > t {
				break
			}
			if !value.IsStaleNaN(p.V) {
				if k, ok := s.family(); ok {
					switch again, earlier := m.w.created.changed(k, max(s.bornAt, s.resetAt), before, p.T); {
					case again:
						s.recreatedAt = p.T
						m.logRecreated(s, p.T)
					case earlier:
						// Created again at a time already counted: where
						// is unknown, and so is the count it had before
						// (docs/collisions.md, What is unknowable).
						m.metrics.unknownCounts.Inc()
					}
				}
				break
			}
		}
	}
}

// returning reports whether a source that had gone stale is coming back:
// whether it was created again is told by its _created sample of the same
// scrape, which travels on its own shard — the birth wait lets it arrive.
func (o *output) returning() bool {
	for _, s := range o.sources {
		if s.stale && s.has {
			return true
		}
	}
	return false
}

// preimage is how many sources the output can have (0: unknown).
func (m *shard) preimage(o *output) int {
	if o.preGen != m.w.preGen {
		n := 0
		if f := m.w.preimage; f != nil {
			n = f(o.labels)
		}
		if n > math.MaxInt16 {
			return n // not cached: asked again next time
		}
		o.pre, o.preGen = int16(n), m.w.preGen
	}
	return int(o.pre)
}

// complete reports whether every source has been seen at or after t, or is
// stale (absent: not waited for). A source known from a tomb is waited for
// although it has not been seen yet.
func (o *output) complete(t int64) bool {
	for _, s := range o.sources {
		if s.lastT < t && !s.lastStl && (s.lastT != math.MinInt64 || s.fromTomb) {
			return false
		}
	}
	return true
}

// knowable reports whether the output's value at t is known: every source
// that has no sample at or before t did not exist at t (first seen after t,
// at or after the horizon, or its first sample's start timestamp is after
// t). It is unknowable where such a source may have counted before this
// state saw it: before the horizon (a start without state), or a source
// known from a tomb. Before the horizon, a source this state has not seen
// at all may have counted too, unless every possible source (preimage n) is
// known. After a power loss (lossy) nothing before the horizon is known: the
// state may lack the samples of its last unsynced seconds.
func (o *output) knowable(t, horizon int64, n int, lossy bool) bool {
	if t < horizon && (n == 0 || len(o.sources) < n || lossy) {
		return false
	}
	for _, s := range o.sources {
		if s.firstT != math.MinInt64 && s.firstT <= t {
			continue // seen at or before t
		}
		if s.firstST > t {
			continue // created after t, says its start timestamp
		}
		if s.fromTomb || t < horizon {
			return false
		}
	}
	return true
}

// overdue reports whether the output may stop waiting for its lagging
// sources at t: each has been silent, and t's first sample arrived, longer
// than the wait bound ago; or the output holds too many timestamps.
func (m *shard) overdue(o *output, t int64, now stamp) bool {
	for _, s := range o.sources {
		if s.queue.len() > maxHeld {
			return true
		}
	}
	b := m.waitBound()
	if at, ok := o.arrivedAt(t); ok && since(now, at) < b {
		return false
	}
	if !m.senderSettled(o, now) {
		return false // a shard of the sender is retrying: its samples are late
	}
	for _, s := range o.sources {
		if s.queue.len() == 0 && !s.lastStl && since(now, s.arrival) < b {
			return false
		}
	}
	return true
}

// finalize computes the output at t from every source's samples up to t and,
// with emit, queues it for sending.
func (m *shard) finalize(o *output, t int64, emit bool) {
	if m.inLossGap(o, t) {
		goneInLossGap(o, t)
	}
	if !m.replay {
		m.recreated(o, t)
		m.logFinal(o, t, emit)
	}
	if o.is(outRevived) && len(m.deadFrom) > 0 {
		m.pruneDeadFrom(o)
	}
	dead := o.dead()
	var diedAt int64 // dead: since when (the last source that counted went stale)
	unsure := false  // dead: a revival at t may be a removal (see bornWhileGone)
	if dead {
		unsure = !m.replay && m.bornWhileGone(o, t)
		for _, s := range o.sources {
			if s.has && s.stale {
				diedAt = max(diedAt, s.staleAt)
			}
		}
	}
	resets := 0
	for _, s := range o.sources {
		n := 0
		for n < s.queue.len() && s.queue.s[n].T <= t {
			n++
		}
		if n > 0 && m.consume(o, s, n) {
			resets++
		}
	}
	o.f = t
	switch {
	case dead:
		switch back, continuing := o.revived(t); {
		case back && !continuing:
			m.ambiguousRestart(o, unsure)
			again := o.is(outRevived) // its last restart a revival too
			o.restart(t)
			m.revived(o, diedAt, again)
			resets = 0
		case back && emit:
			// The same life: what stayed away vanished alone. (Not told
			// at a timestamp whose samples the state may lack — not
			// emitted: before the horizon, a source's absence there may
			// be a sample the state lost.)
			for _, s := range o.sources {
				if s.has && s.stale {
					s.alone = true
				}
			}
		}
	case o.replaced(t):
		// Every source that counted went away at t while a new one was
		// born there: the label set was removed and created again.
		m.ambiguousRestart(o, false)
		o.restart(t)
		resets = 0
	case !dead && emit:
		alive := !o.dead()
		for _, s := range o.sources {
			if s.stale && s.staleAt == t {
				s.alone = alive
			}
		}
	}
	for _, s := range o.sources {
		s.existed = false // said for this finalization only
	}
	if g := m.lossGaps[o]; g != nil && len(g.kept) > 0 {
		keptUntil(g, o)
	}
	o.pendDone(t)
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
	o.set(outLived, true)
	if !m.replay {
		m.metrics.emitted.Inc()
	}
}

// consume takes the first n samples of s.queue into the source's value. It reports whether the
// source reset (its value dropped, across a stale gap too); the count it had
// is then parked in resetFrom until settleResets decides.
func (m *shard) consume(o *output, s *source, n int) (reset bool) {
	for i := range n {
		p := s.queue.at(i)
		if value.IsStaleNaN(p.V) {
			if !s.stale {
				s.staleAt = p.T
			}
			s.stale = true
			continue
		}
		switch {
		case !s.has:
			s.bornAt = p.T
		case (p.V < s.v && !o.is(outMin)) || (p.V > s.v && o.is(outMin)) || (s.stale && s.alone) || (p.ST > s.st && s.st != 0) ||
			s.recreatedAt == p.T:
			// A counter that dropped, a _created that moved later, a source
			// back after it vanished alone, or back after a gap with a later
			// start timestamp or creation time: the series was created again.
			reset = true
			s.resetAt = p.T
			o.park(parked{s: s, v: s.v, t: p.T, recreated: s.stale && s.alone})
		}
		// The output's start timestamp is the earliest of its sources' since
		// the last real reset; it never moves past a sample the output has
		// finalized with a count (a TSDB would take that for a reset). An
		// output that counted nothing yet (it sent only stale markers: its
		// source's last sample before a gap, say, after a reload turned the
		// merge on) takes its first source's, born after that gap.
		if p.ST != 0 && (o.st == 0 || p.ST < o.st) && (o.f == math.MinInt64 || !o.is(outLived) || p.ST <= o.f || !o.counted()) {
			o.st = p.ST
		}
		s.v, s.st, s.has, s.stale, s.alone, s.countT = p.V, p.ST, true, false, false, p.T
	}
	s.queue.drop(n)
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

// settleResets decides what the resets just consumed mean (for a _created
// output, a "reset" is a source created again: its value moved later). A
// reset at
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
	for _, p := range o.parkedNow() {
		if o.restartAt(p.t, m.deadFrom[o]) {
			if _, t := o.carry(); t <= p.t {
				// Counted at or before p.t (in order: always, p.t is
				// the frontier), or unknown. A carry counted only after
				// p.t (a reset consumed late, a source born after it
				// reset alone since) is the new life's, and stays.
				o.carried = nil
			}
			if p.t >= o.lifeAt {
				o.set(outRevived, false)
				delete(m.deadFrom, o)
			}
			o.st, o.lifeAt = 0, max(o.lifeAt, p.t)
			for i, s := range o.sources {
				// Dropped: what was stale at p.t (did not come back),
				// and what counted before p.t and did not reset there
				// (none but what went stale: see restartAt). A source
				// born after p.t is the new life's (consumed late, the
				// drop comes after it: sim all, a review of seed
				// 25003954's fix), and so is one that reset or was born
				// at p.t: gone stale since (a reset consumed late: the
				// state finalized the timestamps after p.t), its count
				// is what the live state decided it is (a source that
				// vanished alone keeps it: a review of that review).
				// Nor did one away at p.t that came back since.
				if (s.stale && s.staleAt <= p.t) || (s.bornAt < p.t && s.resetAt != p.t && !o.awayAt(i, p.t, m.deadFrom[o])) {
					s.has, s.v = false, 0
				}
				if s.has && s.st != 0 && (o.st == 0 || s.st < o.st) {
					o.st = s.st
				}
			}
			o.parked = nil
			return
		}
	}
	for _, p := range o.parkedNow() {
		c, t := o.carry()
		if c == 0 {
			t = p.t
		}
		switch {
		case !o.is(outMin):
			c += p.v
		case c == 0 || p.v < c: // creation times are never 0
			c = p.v
		}
		o.setCarry(c, min(t, p.t))
	}
	o.parked = nil
}

// counted reports whether some source of the output has a count: whether
// it ever sent a value other than a stale marker in this life (a restart
// keeps the counts of the sources that came back).
func (o *output) counted() bool {
	for _, s := range o.sources {
		if s.has {
			return true
		}
	}
	return false
}

// dead reports whether the output has vanished: some source has a count,
// and every source with a count is stale (the target's series are gone, or
// its scrape failed).
func (o *output) dead() bool {
	counted := false
	for _, s := range o.sources {
		if s.has {
			if !s.stale {
				return false
			}
			counted = true
		}
	}
	return counted
}

// revived reports, for an output that was dead (every source that counted
// stale: a failed scrape, the target away, the series removed), whether a
// source came back, and whether one of them is the same series going on
// (not created again: not lower, same creation time). If one goes on, it is
// the same life: the others that came back created again, or stayed away,
// keep their counts (carried). If every source that came back was created
// again, the label set was (LiteLLM restarted, or removed it): the output
// restarts, as the fixed exporter's one series would. Without creation
// times (no _created series, no RW 2.0 start timestamp) a source back at a
// value not lower is taken as going on.
func (o *output) revived(t int64) (back, continuing bool) {
	for _, s := range o.sources {
		if !s.has || s.stale {
			continue
		}
		back = true
		if s.bornAt != t && !slices.ContainsFunc(o.parkedNow(), func(p parked) bool { return p.s == s }) {
			continuing = true // counted before, not created again
		}
	}
	return back, continuing
}

// replaced reports whether, at t, every source that counted before went
// stale and a source born at t counts: nothing of the old life is left. A
// source first seen at t that existed before (see recreated) was not born
// there: it lived beside the old life unseen (its samples came while the
// merge was off, before a reload brought it back), so the old sources
// vanished alone.
func (o *output) replaced(t int64) bool {
	old, born := false, false
	for _, s := range o.sources {
		switch {
		case !s.has:
		case s.bornAt == t && !s.stale:
			born = born || !s.existed
		case s.stale:
			old = old || s.staleAt == t // the last of the old life went at t
		default:
			return false // a source of the old life goes on
		}
	}
	return old && born
}

// ambiguousRestart counts a restart of o decided while a source that
// counted stays away (rwfix_merge_ambiguous_restarts_total): the scrapes
// look the same whether the exporter restarted or that source was removed
// after another was created again (its count then still belongs in the
// sum); the order of the two is not in them. With unsure, the restart is
// counted whatever came back (see bornWhileGone). Called before o.restart.
func (m *shard) ambiguousRestart(o *output, unsure bool) {
	if m.replay {
		return
	}
	if unsure {
		m.metrics.ambiguous.Inc()
		return
	}
	for _, s := range o.sources {
		if s.has && s.stale {
			m.metrics.ambiguous.Inc()
			return
		}
	}
}

// bornWhileGone reports, for the dead output o about to finalize t (its
// sources' samples at t not consumed yet), whether a revival there may be
// a removal rather than the exporter's restart although every source that
// counted comes back: a source first counting at t was created (its
// creation time at t) after a source back at t last counted, and before
// that one was created again (its own creation time at t), while that
// source's death was not observed but taken from a power loss — lostTail
// (goneAfterLoss, keptUntil; goneInLossGap, gone at its last count) takes a
// source that counts as gone right after its last sample kept, staleAt =
// countT+1, where a stale marker comes at a later scrape. Its stale marker
// and its samples of the seconds between were in what the loss cut: it may
// have counted until after the other was created, vanished alone (its
// count carried by the fixed exporter's series), or died with a restart of
// the exporter before it (the restart right). Nothing kept tells which, so
// the restart that follows is counted as ambiguous, as one with a source
// still away (sim all seed 36000008: the 500 last kept at 354.7 s, evicted
// at 474.7 s and created again at 495.9 s; the None's whole _total life,
// created at 385.7 s, cut: both back at 549.7 s, the output restarted
// where the 500's 3 stayed in the fixed series). Not counted where the
// source's death was observed (a stale marker: in order, a source created
// after it proves the restart, which must stay uncounted), nor where a
// creation time is unknown, nor where the source born at t was created
// after the other was created again: that one died before, while nothing
// else lived, and the restart is right. Only a metric: what the revival
// decides is unchanged.
func (m *shard) bornWhileGone(o *output, t int64) bool {
	c := &m.w.created
	createdAt := func(s *source) (float64, bool) {
		if p := s.queue.s; len(p) == 0 || p[0].T != t || value.IsStaleNaN(p[0].V) {
			return 0, false // no count at t
		}
		k, ok := s.family()
		if !ok {
			return 0, false
		}
		return c.at(k, t)
	}
	for _, s := range o.sources {
		if !s.has || !s.stale || s.countT == math.MinInt64 || s.staleAt != s.countT+1 {
			continue // not a source that counted, gone after a power loss
		}
		again, ok := createdAt(s)
		if !ok {
			continue
		}
		for _, b := range o.sources {
			if b.has {
				continue // not first counting at t
			}
			if born, ok := createdAt(b); ok && born > float64(s.countT) && born < again {
				return true
			}
		}
	}
	return false
}

// restart drops what the output counted before t: the carry and the counts
// of the sources that did not come back; the sources that did count from
// their new values.
func (o *output) restart(t int64) {
	o.carried, o.st, o.parked, o.lifeAt = nil, 0, nil, max(o.lifeAt, t)
	o.set(outRevived, false)
	for _, s := range o.sources {
		s.alone = false
		if s.stale {
			s.has, s.v = false, 0
		}
		if s.has && s.st != 0 && (o.st == 0 || s.st < o.st) {
			o.st = s.st
		}
	}
}

// restartAt reports whether every source that counted at r reset or first
// counted at r. A source stale since a timestamp after r counted at r, and
// one born after r did not: a reset consumed late, at a timestamp already
// finalized (its shard of the sender was behind), is decided against what
// the other sources were then, not what they became since (sim all seed
// 12005251: after a power loss, the None taken as gone right after its
// sample at r; and a review of seed 25003954's fix: the None born after the
// 500's drop of an earlier life, which then was carried as a reset alone).
func (o *output) restartAt(r int64, dead []deadSpan) bool {
	for i, s := range o.sources {
		if s.has && s.bornAt <= r && (!s.stale || s.staleAt > r) && s.resetAt != r && s.bornAt != r && !o.awayAt(i, r, dead) {
			return false
		}
	}
	return true
}

// awayAt reports whether o.sources[i], back now, was away (stale) at r,
// before the output's last restart: that restart revived the dead output,
// so each source stale before it stayed away until it, and s went stale at
// or before r (a review of 517c0f6: the None away at the 500's late drop,
// back created again at a restart after it, its bornAt its first life's,
// taken for a source that went on across the drop: 13 stored for 6).
//
// A source's staleAt is its last gap's: one that went away again after the
// revival (a failed scrape after it, say) no longer says it was away at r.
// The dead spans of the output's last revivals (dead, the output's deadFrom
// entry) still do: in each, from when the output died until the revival, no
// source that counted was live (a review of 5f44266: a failed scrape after
// the revival, 13 stored for 6 again), nor before an earlier revival of a
// row (a second LiteLLM restart with a failed scrape: the None's stale
// marker and the last dead span both of the second gap, 11 stored for 4).
func (o *output) awayAt(i int, r int64, dead []deadSpan) bool {
	if !o.is(outRevived) || r >= o.lifeAt {
		return false
	}
	s := o.sources[i]
	for _, d := range dead {
		if d.from <= r && r < d.to && d.brought(i, s) {
			return true
		}
	}
	return !s.stale && s.staleAt != 0 && s.staleAt <= r
}

// brought reports whether the revival of d brought s, o.sources[i], back:
// it counted when the revival was decided, and came back there. A dead span
// speaks only for those, not for a source that counts since from late
// samples: the revival was decided without it, and it counted from that
// sample on (its own staleAt says whether it went away since). A review of
// 5f7484c: a None born late beside a third source of user rules, taken as
// away at the third's late drop, which then restarted the output (its 4
// lost, 8 stored for 12). Asked of a source that counted at or before r,
// before the revival: one brought back keeps that life until it is asked
// (a count dropped since is born again after the revival), whatever it did
// since (a reset at a later revival, or alone).
func (d deadSpan) brought(i int, s *source) bool {
	if d.back == 0 {
		return s.resetAt == d.to // not known: as it was told before
	}
	return i < 64 && d.back&(1<<i) != 0
}

// revived marks o's restart at o.lifeAt as the revival of a dead output,
// dead since diedAt (0: unknown), and keeps its dead span, after those of
// the revivals before it in a row (again: its last restart was one).
func (m *shard) revived(o *output, diedAt int64, again bool) {
	o.set(outRevived, true)
	dead := m.deadFrom[o]
	if !again {
		dead = nil
	}
	if diedAt != 0 {
		d := deadSpan{from: diedAt, to: o.lifeAt}
		for i, s := range o.sources {
			if s.has && i < 64 {
				d.back |= 1 << i // came back: restart dropped the others
			}
		}
		if len(dead) == maxDeadSpans {
			dead = slices.Delete(dead, 0, 1)
		}
		dead = append(dead, d)
	}
	m.setDeadFrom(o, dead)
}

// setDeadFrom records the dead spans of o's last revivals (none: no entry).
func (m *shard) setDeadFrom(o *output, dead []deadSpan) {
	if len(dead) == 0 {
		delete(m.deadFrom, o)
		return
	}
	if m.deadFrom == nil {
		m.deadFrom = map[*output][]deadSpan{}
	}
	m.deadFrom[o] = dead
}

// pruneDeadFrom drops o's dead spans whose revival no sample before can
// come any more: each of its sources (two at least, as the preset's
// outputs have: a source not seen yet may bring late samples) has sent one
// at or after it, and a source's samples come in order (receive ignores one
// at or before its latest). After a LiteLLM restart with a failed scrape
// every output is revived; this keeps the side record to the outputs whose
// sources are still away. (Decided from replayed state: a replay prunes
// alike.)
func (m *shard) pruneDeadFrom(o *output) {
	dead, ok := m.deadFrom[o]
	if !ok || len(o.sources) < 2 {
		return
	}
	seen := int64(math.MaxInt64) // every source has sent a sample at or after it
	for _, s := range o.sources {
		seen = min(seen, s.lastT)
	}
	n := 0
	for n < len(dead) && dead[n].to <= seen {
		n++
	}
	if n > 0 {
		m.setDeadFrom(o, dead[n:])
	}
}

// deadSince is o's deadFrom entry while its last restart is a revival
// (none: nil).
func (m *shard) deadSince(o *output) []deadSpan {
	if !o.is(outRevived) {
		return nil
	}
	return m.deadFrom[o]
}

// value is the output's current value; stale when no source counts. For a
// _created output it is the earliest creation time since the exporter's
// last restart, stale sources and sources created again since included (the
// carry), as a fixed exporter's one series was created at its first count.
func (o *output) value() (v float64, stale bool) {
	stale = true
	if o.is(outMin) {
		v = math.Inf(1)
		if o.carried != nil {
			v = o.carried.v
		}
		for _, s := range o.sources {
			if s.has {
				v = math.Min(v, s.v)
				if !s.stale {
					stale = false
				}
			}
		}
		return v, stale
	}
	v, _ = o.carry()
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
	if m.lastPart != nil && m.lastPartName == part {
		return m.lastPart
	}
	p := m.parts[part]
	if p == nil {
		p = &partition{waiting: map[*output]struct{}{}}
		m.parts[part] = p
	}
	m.lastPart, m.lastPartName = p, part
	return p
}

// forgetParts clears partition's memory of the last one: parts has lost
// some (gc), or was replaced (reset).
func (m *shard) forgetParts() { m.lastPart, m.lastPartName = nil, "" }

// list puts the output on its partition's lists: ready (samples to send, none
// in flight) and waiting (samples held for a source or the clock).
func (m *shard) list(o *output) {
	if o.is(outGone) {
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
	if o.is(outGone) || o.inflight > 0 || len(o.q) == 0 {
		return emits
	}
	if o.is(outBehind) { // as a raw sample waits (Merger.queuedElsewhere)
		if fc, ok := tx.m.w.fencedAt(hashLabels(o.labels)); ok && retiredQueued(fc, o) {
			tx.waited = append(tx.waited, o)
			return emits
		}
		o.set(outBehind, false)
	}
	n := 0
	for n < len(o.q) && (n < int(o.tried) || o.q[n].T <= tx.m.retryUntil) {
		n++
	}
	retry := n > 0
	if !retry {
		n = len(o.q)
	}
	o.inflight = int32(n) // a queue is bounded far below 2³¹ (the sources' held limit)
	o.tried = max(o.tried, int32(n))
	tx.attached = append(tx.attached, o)
	tx.retry = append(tx.retry, retry)
	if emits == nil && tx.room > 0 {
		emits = make([]Emit, 0, tx.room)
	}
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
	wall := m.now()
	now := stampOf(wall)
	for g, o := range tx.groups {
		if o != nil {
			// The clock's decisions first (birth wait, overdue), so
			// that what they release rides in this request's own slot.
			m.advance(o, now)
			emits = tx.attach(o, g, emits)
		}
	}
	if p := m.parts[tx.part]; p != nil {
		// attach may list an output again (on p.ready): the loop reads
		// the array taken, the list goes on in the spare one.
		ready := p.ready
		p.ready, p.spare = p.spare[:0], nil
		for _, o := range ready {
			o.listed &^= listReady
			emits = tx.attach(o, -1, emits)
			if o.listed == 0 {
				m.pending.Add(-1)
			}
		}
		clear(ready) // no output kept alive by the spare array
		p.spare = ready[:0]
		if !wall.Before(p.nextScan) && len(p.waiting) > 0 {
			p.nextScan = wall.Add(scanEvery)
			// In a fixed order (the outputs' age), so that two states fed
			// the same requests send the same requests.
			for _, o := range m.scan.byAge(p.waiting) {
				m.advance(o, now)
				emits = tx.attach(o, -1, emits)
			}
			m.scan.release()
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
	// Those kept back stay ready: the retired queue they wait for may be
	// settled by another partition's request or the idle flush, and
	// nothing else would list them again (their sender may have stopped).
	for _, o := range tx.waited {
		m.list(o)
	}
	tx.waited = tx.waited[:0]
	if m.now().Sub(m.lastGC) > time.Duration(m.cfg.IdleTimeout)/10 {
		m.gc(wall)
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
		tx.release()
		return
	}
	m := tx.m
	m.mu.Lock()
	defer m.mu.Unlock()
	k := 0 // the next retry's entry in taken
	for i, o := range tx.attached {
		n := int(o.inflight)
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
			o.tried = max(0, o.tried-int32(took))
			m.logSent(o, last)
		}
		if o.is(outRetire) && len(o.q) == 0 && !o.is(outGone) {
			m.logDrop(o) // retired, its queue sent: see retire.go
			m.forget(o)
			continue
		}
		m.list(o)
	}
	tx.release()
}

// sent drops the queued samples up to t (replaying a log).
func (o *output) sent(t int64) {
	n := 0
	for n < len(o.q) && o.q[n].T <= t {
		n++
	}
	o.q = dequeue(o.q, n)
	o.tried = max(0, o.tried-int32(n))
}

// gc forgets idle outputs: those whose every source has been silent for
// idle_timeout and that have nothing to send. An output whose value still
// holds a count that its sources coming back would not rebuild — a carry, or
// the count of a stale source beside sources that are not stale — is kept:
// forgetting it would be a fake reset. One whose every source ended stale
// (the target or all its series went away) is forgotten: if they come back,
// they were reborn, and the output restarts with them as a fixed exporter's
// counter would. What a forgotten output leaves is its tomb. Partitions left
// empty are forgotten too.
func (m *shard) gc(now time.Time) {
	m.lastGC = now
	m.gcAt.Store(int64(stampOf(now.Add(time.Duration(m.cfg.IdleTimeout) / 10))))
	idle := time.Duration(m.cfg.IdleTimeout)
	at := stampOf(now)
	for o := range m.all() {
		if o.inflight > 0 || len(o.q) > 0 || o.hasHeld() || since(at, o.touched) <= idle || !o.forgettable() {
			continue
		}
		m.logDrop(o)
		m.forget(o)
	}
	for part, p := range m.parts {
		if len(p.ready) == 0 && len(p.waiting) == 0 {
			delete(m.parts, part)
			m.forgetParts()
		}
	}
}

// forgettable reports whether forgetting the output loses no count (see gc).
func (o *output) forgettable() bool {
	allStale, staleCount := true, false
	for _, s := range o.sources {
		if s.stale || s.lastStl {
			staleCount = staleCount || s.has
		} else {
			allStale = false
		}
	}
	return allStale || (o.carried == nil && !staleCount)
}

// forget removes an idle output, keeping its tomb. The tombs are bounded
// (max_series over all shards): the oldest goes first, the same live and in
// a replay of the log.
func (m *shard) forget(o *output) {
	delete(m.lossGaps, o)
	delete(m.deadFrom, o)
	k := outKey{o.part, o.labels.Hash()}
	if m.besideLater(k, o) {
		// A retired output whose queue is sent while the orphan adopted
		// beside it goes on (see output): that one holds the label set,
		// with a later frontier, and leaves its own tomb when forgotten. A
		// tomb here would be taken by it when a snapshot is read at a
		// start (newOutput), this output's sources as placeholders among
		// its own. (Told by the frontiers, not by outRetire, which a
		// replay of the log does not know: it decides alike.)
		m.remove(o)
		return
	}
	for len(m.forgotten) >= max(1, m.cfg.MaxSeries/mergeShards) && len(m.forgottenQ) > 0 {
		k := m.forgottenQ[0]
		m.forgottenQ = m.forgottenQ[1:]
		delete(m.forgotten, k)
	}
	tb := tomb{f: o.f}
	if !o.allStale() {
		for _, s := range o.sources {
			tb.srcs = append(tb.srcs, s.labelHash())
		}
	}
	m.setTomb(k, tb)
	m.remove(o)
}

// besideLater reports whether another output with o's labels is under k,
// its frontier at or after o's.
func (m *shard) besideLater(k outKey, o *output) bool {
	for x := range m.under(k) {
		if x != o && !x.is(outGone) && x.f >= o.f && labels.Equal(x.labels, o.labels) {
			return true
		}
	}
	return false
}

// setTomb records a tomb, last in the eviction order. forgottenQ may hold
// keys whose tomb was taken back (the output came back): they are skipped
// when it is trimmed, and it is compacted when it has grown to twice the
// tombs.
func (m *shard) setTomb(k outKey, tb tomb) {
	if _, ok := m.forgotten[k]; ok {
		m.forgottenQ = slices.DeleteFunc(m.forgottenQ, func(x outKey) bool { return x == k })
	}
	m.forgotten[k] = tb
	m.forgottenQ = append(m.forgottenQ, k)
	if len(m.forgottenQ) > 2*len(m.forgotten)+64 {
		m.forgottenQ = slices.DeleteFunc(m.forgottenQ, func(x outKey) bool { _, ok := m.forgotten[x]; return !ok })
	}
}

// tombs returns the tombs in eviction order (oldest first), each once.
func (m *shard) tombs() []outKey {
	seen := make(map[outKey]bool, len(m.forgotten))
	var out []outKey
	for _, k := range m.forgottenQ {
		if _, ok := m.forgotten[k]; ok && !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// allStale reports whether every source ended stale: if they come back,
// they were reborn, so a tomb need not wait for them.
func (o *output) allStale() bool {
	for _, s := range o.sources {
		if !s.stale && !s.lastStl {
			return false
		}
	}
	return true
}

// labelHash is the hash of the source's labels (of a placeholder: the one
// its tomb gave).
func (s *source) labelHash() uint64 {
	if s.unseen {
		return s.tombHash()
	}
	return s.labels.Hash()
}

func (m *shard) remove(o *output) {
	if o.is(outMin) {
		for _, s := range o.sources {
			m.w.created.forget(s.labels)
		}
	}
	m.unlink(o)
	m.unorphan(o)
	o.set(outGone, true)
	m.n--
	m.w.total.Add(-1)
	m.nsrc -= len(o.sources)
}

// retiredQueued reports whether a retired output of fence fc, of o's
// partition or of an older scheme, still has samples to send. Only retired
// outputs are waited for, so a wait among them is the only possible cycle
// (orphans of several tenants retired together at an adoption, each made
// behind the other): a retired o waits only for those made before it (a
// smaller id). A live o waits for every one, older or newer.
func retiredQueued(fc fence, o *output) bool {
	for _, x := range fc.outs {
		if x != o && (!o.is(outRetire) || x.id < o.id) && !x.is(outGone) && x.is(outRetire) && (len(x.q) > 0 || x.inflight > 0) && (x.is(outOldPart) || x.part == o.part) {
			return true
		}
	}
	return false
}
