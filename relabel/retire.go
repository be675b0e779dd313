package relabel

import (
	"maps"
	"math"
	"slices"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// A reload can take outputs away from the merge: the preset turned off, a
// rule changed, the policy switched to keep_distinct, the partitions
// (forward_headers) changed. Such an output must neither hold its samples
// forever nor collide with its label set forwarded raw from now on: two
// values at one timestamp, or a raw sample the merge later sends an older
// one behind, make the TSDB refuse the sender's batch (400). retire, run by
// Pipeline.Activate with every shard locked, gives each output the new
// configuration's coverage:
//
//   - a source the new rules no longer merge into the output leaves it (its
//     count leaves the sum: what turning the repair off means);
//   - an output with a source gone, or whose partition will not come again,
//     finalizes what it holds now (the sources at their latest values,
//     counted overdue) and sends its queue as retries (a request of their
//     own, whose refusal never fails the sender's batch);
//   - an output left without sources (or partition) is retired: it leaves
//     the state once its queue is sent, and a fence keeps its label set's
//     raw samples at or before its last finalized timestamp out of the
//     requests for fenceFor (a sender's retry of a request from before the
//     reload would collide with what the merge sent).

// fenceFor is how long a retired output's fence holds.
const fenceFor = 10 * time.Minute

// maxFences bounds the fences of outputs a full state refused (a few MiB).
const maxFences = 1 << 15

// fence is the last timestamp of a label set the merge does not own any
// more (a retired output's) or not yet (an output refused by a full state,
// its label set forwarded raw), until when. A new output of that label set
// starts after f; with dropRaw (retired), raw samples at or before f are
// kept out of the requests.
type fence struct {
	f       int64
	until   stamp
	dropRaw bool
	// outs are the retired outputs of the label set (of any partition):
	// while one's queue is not settled, a request that carries the label
	// set raw waits for it (see Merger.queuedElsewhere). Never changed in
	// place (a copy is read without the lock).
	outs []*output
}

// retire applies a new configuration's coverage; merges reports whether it
// merges a source into an output. Called with no shard locked.
func (w *Merger) retire(merges func(src, out labels.Labels) bool, partitionsChanged bool) {
	if partitionsChanged {
		w.partitionsChanged()
	}
	w.lockAll()
	if partitionsChanged {
		w.gen.Add(1)
	}
	now := w.shards[0].now()
	for _, sh := range w.shards {
		var gone []*output
		for o := range sh.all() {
			if sh.retireOne(o, merges, partitionsChanged, now) {
				gone = append(gone, o)
			}
		}
		for _, o := range gone {
			if partitionsChanged {
				sh.setOldPart(o)
			}
			sh.retired(o, now)
		}
		sh.behindRetired(gone)
	}
	w.unlockAll()
	w.flushLog()
}

// behindRetired makes the outputs of the shard that share a label set with
// one of gone (retired now) and still merge wait for its queue
// (outBehind: attach asks whether it still has samples to send). An
// output made after the retirement waits from its start (shard.output); one
// made before did too, but that is not in the log: after a restart the
// start's retirement (Pipeline.Activate retires again the outputs left
// without sources) gets here, and it waits again (a SIGKILL between a new
// output's first sum and the retired queue's: the retired sum refused for
// good; TestNewOutputWaitsForTheRetiredQueueAfterRestart).
func (m *shard) behindRetired(gone []*output) {
	if len(gone) == 0 {
		return
	}
	hs := make(map[uint64]bool, len(gone))
	for _, o := range gone {
		hs[o.labels.Hash()] = true
	}
	wait := func(h uint64, o *output) {
		if hs[h] && !o.is(outRetire) && !o.is(outGone) && len(o.sources) > 0 {
			o.set(outBehind, true)
		}
	}
	for k, o := range m.outs {
		wait(k.h, o)
	}
	for k, os := range m.more {
		for _, o := range os {
			wait(k.h, o)
		}
	}
}

// retireOne applies the coverage to one output; it reports whether the
// output is left without sources or partition, to be retired.
func (m *shard) retireOne(o *output, merges func(src, out labels.Labels) bool, partitionsChanged bool, now time.Time) bool {
	kept := 0
	for _, s := range o.sources {
		if s.unseen || merges(s.labels, o.labels) { // a tomb's placeholder stays: unknown labels
			kept++
		}
	}
	// An output without sources was retired before (by a reload before a
	// restart: retirement is not in the log, its detached sources are): it
	// is retired again, fenced while its queue is sent. So is one restored
	// with outOldPart and sources left: only a retired output is marked so
	// (recOldPart), and a reload that changed the partitions retires an
	// output that keeps some of its sources too. Restored as an orphan (or,
	// from a snapshot, under its old partition), nothing would wait for it:
	// a new output of its label set under the new scheme would send its
	// sums before the retired queue's older ones, refused for good
	// (TestOutputRetiredInPartWaitedForAfterRestart).
	again := o.is(outOldPart) && !o.is(outRetire)
	if kept == len(o.sources) && kept > 0 && !again {
		if partitionsChanged && !o.is(outOrphan) {
			m.orphan(o)
		}
		return false
	}
	// Finalize what is held, in order, before any source leaves.
	for {
		t, ok := o.next()
		if !ok {
			break
		}
		m.metrics.overdue.Inc()
		if m.inLossGap(o, t) {
			// What lostTail left held, as in advance: unsent, counted
			// once in the gap (a late sample there does not count it again).
			if !m.replay {
				m.lateBeforeHorizon(o, t)
			}
			m.finalize(o, t, false)
			continue
		}
		emit := o.knowable(t, m.w.horizon, m.preimage(o), m.w.powerLoss)
		if !emit && !m.replay {
			m.metrics.unknown.Inc() // as when the clock finalizes it (advance)
		}
		m.finalize(o, t, emit)
	}
	if kept < len(o.sources) {
		m.detach(o, func(s *source) bool { return !s.unseen && !merges(s.labels, o.labels) })
	}
	o.tried = int32(len(o.q)) // the queue goes as retries
	m.list(o)
	return len(o.sources) == 0 || partitionsChanged || again
}

// detach removes the sources gone says, and what they counted; each
// removal is logged.
func (m *shard) detach(o *output, gone func(*source) bool) {
	if l := slices.DeleteFunc(o.parkedNow(), func(p parked) bool { return gone(p.s) }); len(l) == 0 {
		o.parked = nil
	} else {
		*o.parked = l
	}
	n := len(o.sources)
	o.sources = slices.DeleteFunc(o.sources, func(s *source) bool {
		if !gone(s) {
			return false
		}
		m.logDetach(o, s)
		return true
	})
	m.nsrc -= n - len(o.sources)
	if n > len(o.sources) {
		// The sources its revivals brought back are told by index: not
		// known any more (see deadSpan.brought).
		for i := range m.deadFrom[o] {
			m.deadFrom[o][i].back = 0
		}
	}
}

// retired fences an output left without sources and removes it once its
// queue is sent (at once if it is empty).
func (m *shard) retired(o *output, now time.Time) {
	if o.f != math.MinInt64 {
		h := hashLabels(o.labels)
		if m.w.setFence(h, o.f, now, true, o) {
			m.w.logFence(h, o.f, now.Add(fenceFor))
		}
	}
	o.set(outRetire, true)
	if o.is(outOrphan) {
		m.setOldPart(o)
	}
	m.unorphan(o) // never adopted: a new output of its label set starts after the fence
	if len(o.q) == 0 && o.inflight == 0 {
		m.logDrop(o)
		m.forget(o)
	}
}

// fence keeps raw samples of label hash h at or before f out for fenceFor.
func (w *Merger) fence(h uint64, f int64, now time.Time, dropRaw bool) {
	if f == math.MinInt64 {
		return
	}
	if w.setFence(h, f, now, dropRaw, nil) {
		w.logFence(h, f, now.Add(fenceFor))
	}
}

// setFence is fence without the log, for the retired output o (nil: none);
// it reports whether the fence is one to log (dropRaw, taken). With o, the
// shard that holds the outputs of its label set is locked.
func (w *Merger) setFence(h uint64, f int64, now time.Time, dropRaw bool, o *output) (logged bool) {
	w.fenceMu.Lock()
	defer w.fenceMu.Unlock()
	if w.fences == nil {
		w.fences = map[uint64]fence{}
	}
	old, ok := w.fences[h]
	var outs []*output
	if ok {
		f, dropRaw = max(f, old.f), dropRaw || old.dropRaw
		if o != nil {
			// A new slice: readers hold copies of the old one.
			outs = slices.DeleteFunc(slices.Clone(old.outs), func(x *output) bool { return x.is(outGone) || x == o })
		} else {
			outs = old.outs
		}
	} else if !dropRaw && len(w.fences) >= maxFences {
		// Under churn with a full state every refused output would leave
		// one: bounded, the ones a retirement needs are kept first.
		return false
	}
	if o != nil {
		outs = append(outs, o)
	}
	w.fences[h] = fence{f: f, until: stampOf(now.Add(fenceFor)), dropRaw: dropRaw, outs: outs}
	w.fenced.Store(true)
	return dropRaw
}

// A retired output's fence is in the log (recFence), with its end on the
// clock: a restart on the log keeps it until then. Its output may be gone
// from the state already (its queue sent, then forgotten: only a tomb is
// left, which does not fence raw samples), and a sender's request from
// before the reload, answered 5xx, may come back after the restart with the
// raw sample that the merged one would meet (a duplicate with another
// value: the TSDB refuses the sender's whole batch). A fence of a full
// state (not dropRaw) is not kept: it is re-made as the state refuses the
// output again.

// logFence appends a fence record (see fenceRecord). Called with fenceMu
// not held (compaction takes it after the log's lock).
func (w *Merger) logFence(h uint64, f int64, until time.Time) {
	l := w.log
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, fenceRecord(l, h, f, until.UnixMilli())...)
}

// fenceRecord is the record of a fence of label hash h at f, until untilMs
// (ms on the merge's clock).
func fenceRecord(l *mergeLog, h uint64, f, untilMs int64) []byte {
	l.begin(recFence)
	l.uvarint(h)
	l.varint(f)
	l.varint(untilMs)
	return l.frame(nil)
}

// fenceRecords is the snapshot's records of the fences that keep raw
// samples out, each until its end. Called with the log locked.
func (w *Merger) fenceRecords(l *mergeLog) []byte {
	w.fenceMu.Lock()
	defer w.fenceMu.Unlock()
	now := w.shards[0].now()
	var b []byte
	for _, h := range slices.Sorted(maps.Keys(w.fences)) {
		fc := w.fences[h]
		if !fc.dropRaw || stampOf(now) > fc.until {
			continue
		}
		until := now.Add(time.Duration(fc.until - stampOf(now))).UnixMilli()
		b = append(b, fenceRecord(l, h, fc.f, until)...)
	}
	return b
}

// restoreFence puts back a fence that a log kept, until untilMs (ms on the
// merge's clock), unless it has ended.
func (w *Merger) restoreFence(h uint64, f, untilMs int64, now time.Time) {
	left := time.Duration(untilMs-now.UnixMilli()) * time.Millisecond
	if left <= 0 {
		return
	}
	w.fenceMu.Lock()
	defer w.fenceMu.Unlock()
	if w.fences == nil {
		w.fences = map[uint64]fence{}
	}
	var outs []*output
	if old, ok := w.fences[h]; ok {
		f, outs = max(f, old.f), old.outs
	}
	w.fences[h] = fence{f: f, until: stampOf(now.Add(left)), dropRaw: true, outs: outs}
	w.fenced.Store(true)
}

// Fenced reports, without locking, whether some label set is fenced: only
// then does Apply look up its series' labels (fencedAt).
func (w *Merger) Fenced() bool { return w.fenced.Load() }

// fencedAt returns the fence of label hash h (ok false: none). Expired
// fences are dropped at most once a second.
func (w *Merger) fencedAt(h uint64) (fc fence, ok bool) {
	if !w.fenced.Load() {
		return fence{}, false
	}
	w.fenceMu.Lock()
	defer w.fenceMu.Unlock()
	// The clock is set before traffic (SetClock): read without a shard lock.
	if now := stampOf(w.shards[0].now()); now > w.fenceSweep {
		w.fenceSweep = now + stamp(time.Second)
		for k, fc := range w.fences {
			if now > fc.until {
				delete(w.fences, k)
			}
		}
		if len(w.fences) == 0 {
			w.fenced.Store(false)
		}
	}
	fc, ok = w.fences[h]
	return fc, ok
}

// A reload that changes the partitions (the upstreams' forward_headers)
// leaves every output under a partition that no request will name again.
// Such an output becomes an orphan, holding and queueing as before: the
// first request of another partition that needs its label set adopts it —
// it moves there with its sources, counts, queue and frontier, so the
// tenant's counter goes on exactly (with one tenant, the usual case, always).
// Where several tenants' orphans share a label set, which one is whose
// cannot be told: they are retired (finalized, sent as retries, fenced) —
// also when the new scheme names one of their partitions again (find never
// returns an orphan: every request reaches them through adopt). A retired
// orphan is never adopted. Merger.Partitions orphans the outputs before it
// logs the new scheme, so that a restart on a log cut between the two
// finds the old scheme and orphans the rest. An
// orphan never adopted is sent by the idle flush to its old partition and
// forgotten when idle.

// orphan marks o as an orphan (logged).
func (m *shard) orphan(o *output) {
	o.set(outOrphan, true)
	if m.orphans == nil {
		m.orphans = map[uint64][]*output{}
	}
	h := o.labels.Hash()
	m.orphans[h] = append(m.orphans[h], o)
	m.logOrphan(o)
}

// unorphan takes o out of the orphans.
func (m *shard) unorphan(o *output) {
	if !o.is(outOrphan) {
		return
	}
	o.set(outOrphan, false)
	h := o.labels.Hash()
	if l := slices.DeleteFunc(m.orphans[h], func(x *output) bool { return x == o }); len(l) > 0 {
		m.orphans[h] = l
	} else {
		delete(m.orphans, h)
	}
}

// adopt moves the one orphan with labels out (hash h) to partition part and
// returns it; nil when there is none. Several (tenants') orphans with these
// labels are retired instead.
func (m *shard) adopt(part string, out labels.Labels, h uint64, now time.Time) *output {
	var found []*output
	for _, o := range m.orphans[h] {
		if labels.Equal(o.labels, out) {
			found = append(found, o)
		}
	}
	switch {
	case len(found) == 0:
		return nil
	case len(found) > 1:
		for _, o := range found {
			m.setOldPart(o) // an orphan: of the old scheme
			m.unorphan(o)
			m.retireOne(o, func(labels.Labels, labels.Labels) bool { return false }, false, now)
			m.retired(o, now)
		}
		return nil
	}
	o := found[0]
	m.move(o, part)
	m.logAdopt(o)
	return o
}

// move re-keys o under partition part (adoption, or its replay).
func (m *shard) move(o *output, part string) {
	m.unlink(o)
	m.unorphan(o)
	o.part = part
	m.link(outKey{part, o.labels.Hash()}, o)
	m.list(o)
}

// unlink takes o out of the outputs map and its partition's lists.
func (m *shard) unlink(o *output) {
	m.delink(outKey{o.part, o.labels.Hash()}, o)
	if o.listed != 0 {
		if p := m.parts[o.part]; p != nil {
			delete(p.waiting, o)
			p.ready = slices.DeleteFunc(p.ready, func(x *output) bool { return x == o })
		}
		o.listed = 0
		m.pending.Add(-1)
	}
}

// setOldPart marks o as of a partition of an older scheme (see
// queuedElsewhere), in the log too (recOldPart): a restart keeps it, as
// the scheme it was retired under is not known then (sim all seed
// 12010488: retired under keep_distinct, then forward_headers turned on,
// then a SIGKILL; the sender's raw 500 under its new partition overtook the
// retired queue of its old one).
func (m *shard) setOldPart(o *output) {
	if o.is(outOldPart) {
		return
	}
	o.set(outOldPart, true)
	m.logOldPart(o)
}

// queuedElsewhere reports whether a retired output of fence fc still has
// samples to send that a request of partition part does not carry as
// retries (inRequest says which label sets it does): in flight on another
// request, or queued for a partition of an older scheme (a reload changed
// them, or several tenants' orphans with one label set). A raw sample of the label
// set must not reach the upstream before them: stored first, it would make
// them out of order for good (refused, lost). Called with no shard locked.
func (w *Merger) queuedElsewhere(fc fence, part string, inRequest func(labels.Labels) bool) bool {
	if len(fc.outs) == 0 {
		return false
	}
	sh := w.home(fc.outs[0]) // one label set: one shard
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, o := range fc.outs {
		if o.is(outGone) || !o.is(outRetire) || len(o.q) == 0 {
			continue
		}
		if o.part != part {
			// Another partition's queue: one of an older scheme (no
			// request names it again, only the idle flush sends it) may
			// be the same tenant's series. A partition of the current
			// scheme is another tenant's: the raw sample cannot put its
			// queue out of order, and waiting for it would stall both
			// tenants (each one's retries go only with its own request).
			if o.is(outOldPart) {
				return true
			}
			continue
		}
		if !inRequest(o.labels) {
			return true
		}
	}
	return false
}
