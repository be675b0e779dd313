package relabel

import (
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
	now := w.shards[0].now()
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
	if !p.merges() || !p.merger.Pending() {
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
	if !p.merges() {
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
