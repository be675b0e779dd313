package relabel

import (
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/rwfix/rwfix/remotewrite/series"
)

// A merged sample goes upstream riding on a later request of its partition
// (tenant). When a tenant's sender stops, no such request comes: its held
// samples would wait forever, and every request of every tenant would run
// the merge step (Pending stays true). What is here lets the wire side send
// them on its own: it asks which partitions are pending and idle, and
// flushes each in a request of its own, as that tenant's next request would
// have carried them.

// sawPartition records that a transaction of part begins now.
func (w *Merger) sawPartition(part string) {
	now := int64(stampOf(w.shards[0].now()))
	if v, ok := w.seen.Load(part); ok {
		v.(*atomic.Int64).Store(now)
		return
	}
	v := new(atomic.Int64)
	v.Store(now)
	if prev, loaded := w.seen.LoadOrStore(part, v); loaded {
		prev.(*atomic.Int64).Store(now)
	}
}

// PendingPartitions returns the partitions with outputs that wait for a
// request to ride on (or for the clock), each with whether it is idle: no
// transaction of it for at least the wait bound of every shard it waits in.
// By then every sample it holds is due (its sources have been silent that
// long), so a flush sends them all. A partition never seen by this process
// (restored from the log) is idle.
func (w *Merger) PendingPartitions() map[string]bool {
	now := stampOf(w.shards[0].now())
	need := map[string]time.Duration{} // by pending partition: the wait
	for _, sh := range w.shards {
		if !sh.Pending() {
			continue
		}
		sh.mu.Lock()
		b := sh.waitBound()
		for part, p := range sh.parts {
			if len(p.ready) > 0 || len(p.waiting) > 0 {
				need[part] = max(need[part], b)
			}
		}
		sh.mu.Unlock()
	}
	out := make(map[string]bool, len(need))
	for part, b := range need {
		v, ok := w.seen.Load(part)
		out[part] = !ok || since(now, stamp(v.(*atomic.Int64).Load())) >= b
	}
	// Forget the partitions with nothing pending that have been quiet for a
	// while: one that becomes pending is seen again by the request that
	// makes it so (were it forgotten meanwhile, it would be flushed early:
	// harmless, the flush sends only what is due).
	forget := w.maxWait()
	w.seen.Range(func(k, v any) bool {
		if _, pending := need[k.(string)]; !pending && since(now, stamp(v.(*atomic.Int64).Load())) > forget {
			w.seen.Delete(k)
		}
		return true
	})
	return out
}

// PendingPartitions returns the partitions whose merged outputs wait for a
// request to ride on, each with whether it is idle (see
// Merger.PendingPartitions); nil without the merge policy.
func (p *Pipeline) PendingPartitions() map[string]bool {
	// Whatever the policy: a state left by a merge before a reload to
	// keep_distinct still sends what it holds (a retired output's queue of
	// a partition no request names again goes only so).
	if p.merger == nil || !p.merger.Pending() {
		return nil
	}
	return p.merger.PendingPartitions()
}

// Flush is what the next request of partition part would carry for the
// merge, for a partition whose sender has stopped: the samples due to go
// upstream (emits, appended outputs: Group -1) and a run that holds the
// retries (for a request of their own) and must be told, once every
// upstream has answered, what they took (ok: the emits' request). A nil run:
// nothing to send.
func (p *Pipeline) Flush(part string) (emits []Emit, run series.MergeRun) {
	if p.merger == nil {
		return nil, nil
	}
	tx := p.merger.Begin(part)
	mr := &mergeRun{tx: tx}
	for _, e := range tx.Collect() {
		if e.Retry {
			mr.retries = append(mr.retries, e)
			continue
		}
		e.Group = -1
		emits = append(emits, e)
	}
	if len(emits) == 0 && len(mr.retries) == 0 {
		mr.Done(true, nil) // nothing attached: nothing to release
		return nil, nil
	}
	return emits, mr
}

// A flush after a restart sends for partitions this process has seen no
// request of: an output restored from the log, or an orphan of a
// partition no request will name again (a forward_headers reload). The
// partition's name is made of its forwarded headers' values but not their
// names, which depend on the configuration it was made under; nor does it
// say the sender's protocol. So the wire side tells the state, at a
// partition's first request in a process (and when it changes), how its
// requests come (its Origin), and the state keeps it in the log.

// KeepOrigin records partition part's origin, logging it if it is new or
// changed. Called with no shard locked.
func (w *Merger) KeepOrigin(part string, o series.Origin) {
	l := w.log
	if l != nil {
		l.mu.Lock()
	}
	w.originMu.Lock()
	old, known := w.origins[part]
	changed := !known || !sameOrigin(old, o)
	if changed {
		o = cloneOrigin(o)
		if w.origins == nil {
			w.origins = map[string]series.Origin{}
		}
		w.origins[part] = o
		if l != nil {
			l.begin(recOrigin)
			l.origin(part, o)
			l.end()
		}
	}
	w.originMu.Unlock()
	if l != nil {
		// Written with the request's records, after which it comes in the
		// buffer: before any record of an output of a new partition.
		l.mu.Unlock()
	}
}

// Origin returns partition part's origin (ok false: unknown).
func (w *Merger) Origin(part string) (series.Origin, bool) {
	w.originMu.Lock()
	defer w.originMu.Unlock()
	o, ok := w.origins[part]
	return o, ok
}

// ForgetOrigin drops partition part's origin. Not logged: a restart that
// finds it restores it, and drops it at once if no output of part is left
// (see keepOriginsInUse); a request of part records it again.
func (w *Merger) ForgetOrigin(part string) {
	w.originMu.Lock()
	defer w.originMu.Unlock()
	delete(w.origins, part)
}

// keepOriginsInUse drops the origins of partitions without outputs (after a
// replay: a partition that gets outputs again does so by a request, which
// records its origin). Called with every shard locked.
func (w *Merger) keepOriginsInUse() {
	w.originMu.Lock()
	defer w.originMu.Unlock()
	if len(w.origins) == 0 {
		return
	}
	used := map[string]bool{}
	for _, sh := range w.shards {
		for k := range sh.outs {
			used[k.part] = true
		}
	}
	for part := range w.origins {
		if !used[part] {
			delete(w.origins, part)
		}
	}
}

func sameOrigin(a, b series.Origin) bool {
	return a.Proto == b.Proto && maps.EqualFunc(a.Header, b.Header, slices.Equal)
}

func cloneOrigin(o series.Origin) series.Origin {
	h := make(map[string][]string, len(o.Header))
	for k, v := range o.Header {
		h[k] = slices.Clone(v)
	}
	return series.Origin{Proto: o.Proto, Header: h}
}

// KeepOrigin records how partition part's requests come (see
// Merger.KeepOrigin); nothing without a merge state.
func (p *Pipeline) KeepOrigin(part string, o series.Origin) {
	if p.merger != nil {
		p.merger.KeepOrigin(part, o)
	}
}

// Origin returns how partition part's requests come, as recorded in this
// process or one before it (ok false: unknown).
func (p *Pipeline) Origin(part string) (series.Origin, bool) {
	if p.merger == nil {
		return series.Origin{}, false
	}
	return p.merger.Origin(part)
}

// ForgetOrigin drops what KeepOrigin recorded for part.
func (p *Pipeline) ForgetOrigin(part string) {
	if p.merger != nil {
		p.merger.ForgetOrigin(part)
	}
}
