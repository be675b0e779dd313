package relabel

import "unsafe"

// heldQueue is a source's samples received and not yet consumed (their
// timestamps after the output's frontier). Held samples are most of the
// merge's memory whenever outputs wait — at a birth while the sender sends
// fast, a lagging shard, a sender catching up on a backlog — so a sample
// takes 16 bytes, its timestamp and value. The RW 2.0 start timestamps
// (always 0 in RW 1.0) go in st beside, only once a queued sample has one;
// then st has one per sample.
type heldQueue struct {
	s  []held
	st *[]int64
}

// held is a queued sample without its start timestamp.
type held struct {
	T int64
	V float64
}

// heldSampleBytes is what a queued sample takes without a start timestamp.
const heldSampleBytes = int(unsafe.Sizeof(held{}))

func (q *heldQueue) len() int { return len(q.s) }

// at returns the i-th queued sample.
func (q *heldQueue) at(i int) Sample {
	p := Sample{T: q.s[i].T, V: q.s[i].V}
	if q.st != nil {
		p.ST = (*q.st)[i]
	}
	return p
}

// first returns the first queued sample's timestamp; ok false when empty.
func (q *heldQueue) first() (t int64, ok bool) {
	if len(q.s) == 0 {
		return 0, false
	}
	return q.s[0].T, true
}

// push appends p. A queue that holds many grows by a quarter, not double:
// a doubled queue left a third of its room unused.
func (q *heldQueue) push(p Sample) {
	if len(q.s) == cap(q.s) && len(q.s) >= 32 {
		q.s = append(make([]held, 0, len(q.s)+len(q.s)/4), q.s...)
	}
	q.s = append(q.s, held{T: p.T, V: p.V})
	switch {
	case q.st != nil:
		*q.st = append(*q.st, p.ST)
	case p.ST != 0:
		st := make([]int64, len(q.s), cap(q.s))
		st[len(st)-1] = p.ST
		q.st = &st
	}
}

// drop removes the first n samples. An emptied queue that grew (a source
// lagging, an output learning) gives its memory back: in the steady state
// a queue holds a sample or two.
func (q *heldQueue) drop(n int) {
	q.s = q.s[:copy(q.s, q.s[n:])]
	if q.st != nil {
		*q.st = (*q.st)[:copy(*q.st, (*q.st)[n:])]
	}
	if len(q.s) == 0 {
		q.st = nil
		if cap(q.s) > 4 {
			q.s = nil
		}
	}
}

// samples returns a copy of the queue (for the log's snapshot).
func (q *heldQueue) samples() []Sample {
	out := make([]Sample, len(q.s))
	for i := range q.s {
		out[i] = q.at(i)
	}
	return out
}

// set replaces the queue with ss (a snapshot's, replaying the log).
func (q *heldQueue) set(ss []Sample) {
	*q = heldQueue{}
	for _, p := range ss {
		q.push(p)
	}
}

// heapBytes is the heap the queue holds.
func (q *heldQueue) heapBytes() int64 {
	b := allocSize(cap(q.s) * heldSampleBytes)
	if q.st != nil {
		b += allocSize(cap(*q.st)*8) + allocSize(int(unsafe.Sizeof([]int64(nil))))
	}
	return b
}
