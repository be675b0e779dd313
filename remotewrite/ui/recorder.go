package ui

import (
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rwfix/rwfix/remotewrite"
	"github.com/rwfix/rwfix/remotewrite/series"
)

// Bounds of what the Recorder keeps.
const (
	maxExamples       = 20 // distinct recent changes (the same series again updates its row)
	maxRejectMessages = 5  // last messages per reason
	// MaxChangesPerRequest is what the handler reports per request (give it
	// to remotewrite.WithObserver): examples, not a log.
	MaxChangesPerRequest = 4
	// errorWindow is how far back an upstream's error rate looks, in
	// errorBuckets buckets.
	errorWindow  = time.Minute
	errorBuckets = 12
)

// Recorder is the status page's remotewrite.Observer: the recent distinct
// changes (a change seen again counts and updates its example), the last
// reject messages, and each upstream's last answer and recent error rate.
type Recorder struct {
	mu        sync.Mutex
	now       func() time.Time
	examples  map[string]*example // by exampleKey
	rejects   map[string][]stamped
	upstreams map[string]*upstreamState
}

// example is one distinct change: the latest occurrence, and how often and
// since when it was seen.
type example struct {
	Time   time.Time // last seen
	First  time.Time
	Count  int
	Change remotewrite.Change // the latest; sources one per label set
}

type stamped struct {
	Time time.Time
	Text string
}

type upstreamState struct {
	Last         remotewrite.UpstreamAnswer
	LastTime     time.Time
	Fallback     string
	FallbackTime time.Time
	// Answers and failures over the last errorWindow, in buckets of
	// errorWindow/errorBuckets by the time they started (see recentErrors).
	buckets [errorBuckets]answerBucket
}

type answerBucket struct {
	start         int64 // bucket number (unix time / bucket width)
	total, failed int
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	return &Recorder{now: time.Now, examples: map[string]*example{}, rejects: map[string][]stamped{}, upstreams: map[string]*upstreamState{}}
}

// exampleKey names a change by what it did to which series, not by its
// values: the same series changed the same way again is the same example.
func exampleKey(c remotewrite.Change) string {
	var b strings.Builder
	b.WriteString(c.Action)
	b.WriteByte(0xff)
	b.WriteString(c.Output.String())
	srcs := make([]string, 0, len(c.Sources))
	for _, s := range c.Sources {
		srcs = append(srcs, s.Labels.String())
	}
	sort.Strings(srcs)
	for i, s := range srcs {
		if i == 0 || s != srcs[i-1] {
			b.WriteByte(0xff)
			b.WriteString(s)
		}
	}
	return b.String()
}

// oneSourcePerSeries joins the sources that are one series (a sender
// catching up sends one TimeSeries per sample): its samples in timestamp
// order, one per timestamp.
func oneSourcePerSeries(srcs []remotewrite.ChangedSeries) []remotewrite.ChangedSeries {
	var out []remotewrite.ChangedSeries
	at := map[string]int{}
	for _, s := range srcs {
		k := s.Labels.String()
		i, ok := at[k]
		if !ok {
			at[k] = len(out)
			out = append(out, remotewrite.ChangedSeries{Labels: s.Labels, Samples: append([]series.Sample(nil), s.Samples...)})
			continue
		}
		out[i].Samples = append(out[i].Samples, s.Samples...)
	}
	for i := range out {
		smp := out[i].Samples
		sort.SliceStable(smp, func(a, b int) bool { return smp[a].T < smp[b].T })
		out[i].Samples = slices.CompactFunc(smp, func(a, b series.Sample) bool { return a.T == b.T })
	}
	return out
}

// ObserveChanges keeps the request's changes among the recent examples.
func (r *Recorder) ObserveChanges(changes []remotewrite.Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	for _, c := range changes {
		c.Sources = oneSourcePerSeries(c.Sources)
		k := exampleKey(c)
		if e, ok := r.examples[k]; ok {
			e.Time, e.Count, e.Change = now, e.Count+1, c
			continue
		}
		if len(r.examples) >= maxExamples {
			// The least recently seen one makes room.
			var oldest string
			for k, e := range r.examples {
				if oldest == "" || e.Time.Before(r.examples[oldest].Time) {
					oldest = k
				}
			}
			delete(r.examples, oldest)
		}
		r.examples[k] = &example{Time: now, First: now, Count: 1, Change: c}
	}
}

// ObserveReject keeps the last messages of each reason.
func (r *Recorder) ObserveReject(reason, msg string) {
	const maxLen = 500
	if len(msg) > maxLen {
		msg = msg[:maxLen] + "…"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rejects[reason] = append(r.rejects[reason], stamped{Time: r.now(), Text: msg})
	if l := r.rejects[reason]; len(l) > maxRejectMessages {
		r.rejects[reason] = append(l[:0:0], l[len(l)-maxRejectMessages:]...)
	}
}

// ObserveUpstream keeps each upstream's last answer, why it fell back to
// RW 1.0, and its answers over the last minutes.
func (r *Recorder) ObserveUpstream(a remotewrite.UpstreamAnswer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	s := r.upstreams[a.Upstream]
	if s == nil {
		s = &upstreamState{}
		r.upstreams[a.Upstream] = s
	}
	if a.Fallback != "" {
		s.Fallback, s.FallbackTime = a.Fallback, now
		return
	}
	s.Last, s.LastTime = a, now
	n := now.UnixNano() / int64(errorWindow/errorBuckets)
	b := &s.buckets[n%errorBuckets]
	if b.start != n {
		*b = answerBucket{start: n}
	}
	b.total++
	if a.Code/100 != 2 {
		b.failed++
	}
}

// recentErrors returns an upstream's answers and failures over the last
// errorWindow (give or take a bucket).
func (s *upstreamState) recentErrors(now time.Time) (total, failed int) {
	n := now.UnixNano() / int64(errorWindow/errorBuckets)
	for _, b := range s.buckets {
		if b.total > 0 && n-b.start < errorBuckets {
			total += b.total
			failed += b.failed
		}
	}
	return total, failed
}

// recent returns the examples, most recently seen first.
func (r *Recorder) recent() []example {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]example, 0, len(r.examples))
	for _, e := range r.examples {
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.After(out[j].Time)
		}
		return exampleKey(out[i].Change) < exampleKey(out[j].Change)
	})
	return out
}

func (r *Recorder) rejectMessages(reason string) []stamped {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]stamped(nil), r.rejects[reason]...)
}

func (r *Recorder) upstream(name string) (upstreamState, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.upstreams[name]
	if !ok {
		return upstreamState{}, false
	}
	return *s, true
}
