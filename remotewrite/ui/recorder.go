package ui

import (
	"sync"
	"time"

	"github.com/rwfix/rwfix/remotewrite"
)

// Bounds of what the Recorder keeps.
const (
	maxExamples       = 20 // recent changed series
	maxRejectMessages = 5  // last messages per reason
	// MaxChangesPerRequest is what the handler reports per request (give it
	// to remotewrite.WithObserver): examples, not a log.
	MaxChangesPerRequest = 4
)

// Recorder is the status page's remotewrite.Observer: bounded rings of
// recent examples and reject messages, and each upstream's last answer.
type Recorder struct {
	mu        sync.Mutex
	examples  []example // ring
	next      int
	rejects   map[string][]stamped
	upstreams map[string]*upstreamState
}

type example struct {
	Time   time.Time
	Change remotewrite.Change
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
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	return &Recorder{rejects: map[string][]stamped{}, upstreams: map[string]*upstreamState{}}
}

// ObserveChanges keeps the request's changes among the recent examples.
func (r *Recorder) ObserveChanges(changes []remotewrite.Change) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range changes {
		e := example{Time: now, Change: c}
		if len(r.examples) < maxExamples {
			r.examples = append(r.examples, e)
			continue
		}
		r.examples[r.next] = e
		r.next = (r.next + 1) % maxExamples
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
	r.rejects[reason] = append(r.rejects[reason], stamped{Time: time.Now(), Text: msg})
	if l := r.rejects[reason]; len(l) > maxRejectMessages {
		r.rejects[reason] = append(l[:0:0], l[len(l)-maxRejectMessages:]...)
	}
}

// ObserveUpstream keeps each upstream's last answer, and why it fell back
// to RW 1.0.
func (r *Recorder) ObserveUpstream(a remotewrite.UpstreamAnswer) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
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
}

// recent returns the examples, newest first.
func (r *Recorder) recent() []example {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]example, 0, len(r.examples))
	n := len(r.examples)
	for i := range n {
		out = append(out, r.examples[(r.next+n-1-i)%n])
	}
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
