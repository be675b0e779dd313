package rwtest

import (
	"fmt"
	"math"
	"slices"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/rwfix/rwfix/remotewrite/wire"
)

// HeadSample is one float sample a PrometheusHead upstream stored.
type HeadSample struct {
	T int64
	V float64
}

// PrometheusHead makes the upstream store float samples and judge them as a
// Prometheus receiver's head does (out-of-order window 0), because that is
// where a relay can lose data: per series, a sample older than the newest is
// out of order, one at the newest timestamp with another value is a
// duplicate, and one equal in timestamp and value to the newest is accepted
// silently (not stored twice). RW 1.0 is all or nothing: one refused sample
// rolls the whole request back, answered 400. RW 2.0 is partial: the others
// are stored, the answer is 400 with Written headers counting them.
// Histograms are not judged.
func PrometheusHead() UpstreamOption {
	return func(c *upstreamConfig) { c.head = true }
}

// headSeries is one series of the head.
type headSeries struct {
	labels  labels.Labels
	samples []HeadSample
}

func (s *headSeries) newest() (HeadSample, bool) {
	if len(s.samples) == 0 {
		return HeadSample{}, false
	}
	return s.samples[len(s.samples)-1], true
}

// headSample is one sample of a request, with its series.
type headSample struct {
	ls labels.Labels
	HeadSample
}

// headSamples decodes a request's float samples, in request order.
func headSamples(proto remoteapi.WriteMessageType, raw []byte) ([]headSample, error) {
	series, err := wire.Decode(proto, raw)
	if err != nil {
		return nil, err
	}
	var out []headSample
	for _, ts := range series {
		for _, s := range ts.Samples {
			out = append(out, headSample{ts.Labels, HeadSample{s.Timestamp, s.Value}})
		}
	}
	return out, nil
}

// appendHead judges a request's samples against the head and stores what
// the protocol lets through; it returns how many samples it stored and the
// first refusal (nil: none). Called with u.mu held.
func (u *RecordingUpstream) appendHead(proto remoteapi.WriteMessageType, raw []byte) (stored int, refusal error) {
	samples, err := headSamples(proto, raw)
	if err != nil {
		return 0, err
	}
	if u.head == nil {
		u.head = map[string]*headSeries{}
	}
	// What this request appends, by series, on top of the head: committed
	// at the end (RW 1.0: only if nothing was refused).
	pending := map[string][]HeadSample{}
	for _, s := range samples {
		k := s.ls.String()
		last, ok := HeadSample{}, false
		if p := pending[k]; len(p) > 0 {
			last, ok = p[len(p)-1], true
		} else if hs := u.head[k]; hs != nil {
			last, ok = hs.newest()
		}
		var verdict error
		switch {
		case !ok || s.T > last.T:
			pending[k] = append(pending[k], s.HeadSample)
			if u.head[k] == nil {
				u.head[k] = &headSeries{labels: s.ls}
			}
			continue
		case s.T < last.T:
			verdict = fmt.Errorf("out of order sample: %s at %d, newest %d", k, s.T, last.T)
		case math.Float64bits(s.V) == math.Float64bits(last.V):
			continue // the same sample again: accepted, not stored twice
		default:
			verdict = fmt.Errorf("duplicate sample for timestamp: %s at %d: %v, stored %v", k, s.T, s.V, last.V)
			u.conflicts = append(u.conflicts, verdict.Error())
		}
		if refusal == nil {
			refusal = verdict
		}
	}
	if refusal != nil && proto != ProtoV2 {
		return 0, refusal // rolled back
	}
	for k, p := range pending {
		u.head[k].samples = append(u.head[k].samples, p...)
		stored += len(p)
	}
	return stored, refusal
}

// HeadSeries returns what a PrometheusHead upstream stored, by series (the
// labels' String), each series' samples in timestamp order.
func (u *RecordingUpstream) HeadSeries() map[string][]HeadSample {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make(map[string][]HeadSample, len(u.head))
	for k, s := range u.head {
		if len(s.samples) > 0 {
			out[k] = slices.Clone(s.samples)
		}
	}
	return out
}

// HeadConflicts returns the duplicates a PrometheusHead upstream refused: a
// sample at a stored timestamp with another value, which a relay must never
// send.
func (u *RecordingUpstream) HeadConflicts() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.conflicts)
}

// HeadAppend stores samples in a PrometheusHead upstream's series ls as if
// an earlier request had written them (say, one whose answer was lost). They
// must be newer than what the series holds.
func (u *RecordingUpstream) HeadAppend(ls labels.Labels, samples ...HeadSample) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.head == nil {
		u.head = map[string]*headSeries{}
	}
	k := ls.String()
	if u.head[k] == nil {
		u.head[k] = &headSeries{labels: ls}
	}
	u.head[k].samples = append(u.head[k].samples, samples...)
}
