package remotewrite

import (
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/rwfix/rwfix/remotewrite/series"
)

// Observer learns what the handler did, for a status page or a playground.
// It is called off the hot path: per request only when the rules changed
// something (a request no rule touches costs one nil check), per refused
// request, and per upstream answer. Calls come from concurrent requests.
type Observer interface {
	// ObserveChanges gets what the rules did to one request.
	ObserveChanges(changes []Change)
	// ObserveReject gets a refused request: its reason (as in
	// rwfix_requests_rejected_total) and the message the sender got.
	ObserveReject(reason, msg string)
	// ObserveUpstream gets one upstream's answer.
	ObserveUpstream(a UpstreamAnswer)
}

// Change actions, as a Change reports them.
const (
	ChangeRepaired = "repaired" // new labels, same samples
	ChangeMerged   = "merged"   // sources summed into one output, sent now
	ChangeRemoved  = "removed"  // taken out of the request: dropped by a rule, or a merge source whose output is held
	ChangeEmitted  = "emitted"  // a merged output's held samples, sent with this request
)

// Change is one thing the rules did to a request.
type Change struct {
	Action  string
	Sources []ChangedSeries // the input series (none for ChangeEmitted)
	Output  labels.Labels   // empty for ChangeRemoved
	Samples []series.Sample // the output's samples
}

// ChangedSeries is an input series of a Change, as the sender sent it.
type ChangedSeries struct {
	Labels  labels.Labels
	Samples []series.Sample
}

// UpstreamAnswer is one upstream's answer to one request.
type UpstreamAnswer struct {
	Upstream string
	Protocol string // "1.0" or "2.0": what was sent
	Code     int    // 0 when no answer came
	Message  string // the upstream's body on a non-2xx answer, or the network error
	Duration time.Duration
	// Fallback is set on the answer that made rwfix switch the upstream to
	// RW 1.0, and says why.
	Fallback string
}

// WithObserver reports to o what the handler does. maxChanges bounds the
// changes reported per request (0: all of them, for offline runs).
func WithObserver(o Observer, maxChanges int) Option {
	return func(h *Handler) {
		h.observer, h.maxChanges = o, maxChanges
		h.observeBudget = &observeBudget{all: maxChanges == 0}
	}
}

// observed wraps r so that the changes it makes are reported.
func (h *Handler) observed(r series.Repairer) series.Repairer {
	if h.observer == nil || r == nil {
		return r
	}
	return observedRepairer{r: r, h: h}
}

func (h *Handler) observeReject(reason, msg string) {
	if h.observer != nil {
		h.observer.ObserveReject(reason, msg)
	}
}

func (h *Handler) observeUpstream(u *Upstream, proto remoteapi.WriteMessageType, r reply, d time.Duration) {
	if h.observer == nil {
		return
	}
	a := UpstreamAnswer{Upstream: u.name, Protocol: protoLabel(string(proto)), Code: r.code, Message: r.msg, Duration: d}
	if r.err != nil {
		a.Message = r.err.Error()
	}
	h.observer.ObserveUpstream(a)
}

func (h *Handler) observeFallback(u *Upstream, r reply) {
	if h.observer == nil {
		return
	}
	why := "answered 415 to remote write 2.0"
	if r.code != 415 {
		why = "answered " + strconv.Itoa(r.code) + " to remote write 2.0 without the X-Prometheus-Remote-Write-*-Written headers"
	}
	h.observer.ObserveUpstream(UpstreamAnswer{Upstream: u.name, Protocol: "2.0", Code: r.code, Fallback: why})
}

// observeBudget bounds how many requests the status page watches: a burst
// of 20, then 10 per second. The page shows examples, not a log, and a busy
// relay must not pay for watching every request (maps, copies of samples).
// Offline runs (maxChanges 0) watch every request.
type observeBudget struct {
	next   atomic.Int64 // where the next request's examples start (see changes)
	mu     sync.Mutex
	all    bool
	tokens float64
	last   time.Time
}

const (
	observeBurst  = 20
	observePerSec = 10
)

func (b *observeBudget) refund() {
	if b.all {
		return
	}
	b.mu.Lock()
	b.tokens = min(observeBurst, b.tokens+1)
	b.mu.Unlock()
}

func (b *observeBudget) take() bool {
	if b.all {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if b.last.IsZero() {
		b.tokens = observeBurst
	} else {
		b.tokens = min(observeBurst, b.tokens+now.Sub(b.last).Seconds()*observePerSec)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// observedRepairer reports what its Repairer changes in each request.
type observedRepairer struct {
	r series.Repairer
	h *Handler
}

// recordingBatches are reused: a request that no rule changes costs no
// allocation for being observed.
var recordingBatches = sync.Pool{New: func() any { return &recordingBatch{} }}

func (o observedRepairer) Apply(b series.Batch, part string) (series.Result, series.MergeRun) {
	if !o.h.observeBudget.take() {
		return o.r.Apply(b, part) // enough examples for now: not watched
	}
	rb := recordingBatches.Get().(*recordingBatch)
	rb.Batch = b
	defer func() {
		*rb = recordingBatch{}
		recordingBatches.Put(rb)
	}()
	res, run := o.r.Apply(rb, part)
	if res.Changed || len(rb.appended) > 0 {
		from := int(o.h.observeBudget.next.Add(int64(max(o.h.maxChanges, 1))))
		o.h.observer.ObserveChanges(rb.changes(o.h.maxChanges, from))
	} else {
		o.h.observeBudget.refund() // nothing to show: the token stays for a request that has
	}
	return res, run
}

// recordingBatch passes every call on to the request, and notes the changes.
type recordingBatch struct {
	series.Batch
	relabeled map[int]labels.Labels
	order     []int // slots, in the order they first changed
	merged    map[int]mergedSlot
	removed   []int
	appended  []Change
}

// MinTime passes on the watched batch's (series.TimeBounded).
func (b *recordingBatch) MinTime() int64 {
	if tb, ok := b.Batch.(series.TimeBounded); ok {
		return tb.MinTime()
	}
	return math.MinInt64
}

type mergedSlot struct {
	samples []series.Sample
	srcs    []int
}

func (b *recordingBatch) note(i int) {
	if _, ok := b.relabeled[i]; ok {
		return
	}
	if _, ok := b.merged[i]; ok {
		return
	}
	b.order = append(b.order, i)
}

func (b *recordingBatch) SetLabels(i int, ls labels.Labels) {
	if b.relabeled == nil {
		b.relabeled = map[int]labels.Labels{}
	}
	b.note(i)
	b.relabeled[i] = ls
	b.Batch.SetLabels(i, ls)
}

func (b *recordingBatch) SetSamples(i int, s []series.Sample, srcs []int) {
	if b.merged == nil {
		b.merged = map[int]mergedSlot{}
	}
	b.note(i)
	b.merged[i] = mergedSlot{samples: append([]series.Sample(nil), s...), srcs: append([]int(nil), srcs...)}
	b.Batch.SetSamples(i, s, srcs)
}

func (b *recordingBatch) AppendSeries(ls labels.Labels, s []series.Sample) {
	b.appended = append(b.appended, Change{Action: ChangeEmitted, Output: ls, Samples: append([]series.Sample(nil), s...)})
	b.Batch.AppendSeries(ls, s)
}

func (b *recordingBatch) Drop(i int) {
	b.removed = append(b.removed, i)
	b.Batch.Drop(i)
}

func (b *recordingBatch) source(i int, sb *labels.ScratchBuilder) ChangedSeries {
	return ChangedSeries{Labels: b.Labels(i, sb), Samples: append([]series.Sample(nil), b.Samples(i)...)}
}

// changes lists the noted changes, at most maxN of them (0: all), from
// the from-th on (wrapping around): the caller moves from along from
// request to request, so that a page of a few examples per request sees
// every series a rule changes, not the first few of each request again.
func (b *recordingBatch) changes(maxN, from int) []Change {
	var (
		out    []Change
		sb     labels.ScratchBuilder
		merged = map[int]bool{}
	)
	for _, i := range b.order {
		if m, ok := b.merged[i]; ok {
			for _, j := range m.srcs {
				merged[j] = true
			}
		}
	}
	// The candidates, in order: changed slots, removed series (not merge
	// sources reported with their output), appended outputs.
	type cand struct{ kind, i int }
	var cands []cand
	for _, i := range b.order {
		cands = append(cands, cand{0, i})
	}
	for _, i := range b.removed {
		if !merged[i] {
			cands = append(cands, cand{1, i})
		}
	}
	for i := range b.appended {
		cands = append(cands, cand{2, i})
	}
	n, start := len(cands), 0
	if maxN > 0 && n > maxN {
		start, n = from%len(cands), maxN
	}
	for k := range n {
		c := cands[(start+k)%len(cands)]
		switch c.kind {
		case 0:
			i := c.i
			if m, ok := b.merged[i]; ok {
				output, relabeled := b.relabeled[i]
				if !relabeled {
					output = b.Labels(i, &sb) // the genuine series' slot: its own labels are the output's
				}
				ch := Change{Action: ChangeMerged, Output: output, Samples: m.samples}
				for _, j := range m.srcs {
					ch.Sources = append(ch.Sources, b.source(j, &sb))
				}
				out = append(out, ch)
				continue
			}
			src := b.source(i, &sb)
			out = append(out, Change{Action: ChangeRepaired, Sources: []ChangedSeries{src}, Output: b.relabeled[i], Samples: src.Samples})
		case 1:
			out = append(out, Change{Action: ChangeRemoved, Sources: []ChangedSeries{b.source(c.i, &sb)}})
		case 2:
			out = append(out, b.appended[c.i])
		}
	}
	return out
}
