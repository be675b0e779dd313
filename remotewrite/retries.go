package remotewrite

import (
	"context"
	"net/http"
	"sync"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"

	"github.com/rwfix/rwfix/remotewrite/series"
)

// Merged samples that an upstream may have already (sent before with a lost
// answer, restored after a restart) travel in a request of their own, so
// that a refusal never fails the sender's batch. A refusal of that request
// says little, though: Prometheus' RW 1.0 receiver rolls back the whole
// request on one sample older than the series' newest, so one sample it has
// makes it refuse the others too, some of which it never had. So a 4xx to
// more than one sample is bisected until each sample is settled: accepted,
// or refused alone (then the upstream has it, or never will take it).

// maxRetryRequests bounds the requests one round of retries sends to one
// upstream. Bisecting down to one refused sample among n takes about
// 2·log2(n) requests, so this settles at least one sample of any realistic
// round; what the budget does not reach stays queued in the merge state and
// goes with the next request, as retries again.
const maxRetryRequests = 32

// fullBisection is the budget that settles every one of the emits' samples
// unless an upstream fails (5xx, timeout): bisecting n samples that are all
// refused takes 2n-1 requests. The sender's own samples sent on their own
// after a start without state (series.Backlog) get it: what is not settled
// there makes the sender send its whole request again, and the same split
// again, so a smaller budget would never get through a request with more
// refused samples than it (the sender would retry forever).
func fullBisection(emits []series.Emit) int {
	n := 0
	for _, e := range emits {
		n += len(e.Samples)
	}
	return max(maxRetryRequests, 2*n)
}

// retrySpan is a run of one emit's samples: emits[emit].Samples[from:to].
type retrySpan struct{ emit, from, to int }

// retryBisection settles one round of retries with one upstream.
type retryBisection struct {
	h      *Handler
	ctx    context.Context
	in     http.Header
	u      *Upstream
	proto  remoteapi.WriteMessageType
	emits  []series.Emit
	budget int
	// settled[i]: how many of emits[i]'s samples, from the first, the
	// upstream has settled. Parts are resolved in order, each before the
	// next, so an output's samples reach the upstream in order and what is
	// settled is a prefix.
	settled []int
	refused int
	last    reply // the last refusal, for the log
}

// sendRetries sends re-sent merged samples to every upstream, each on its
// own (two upstreams may answer differently), within budget requests per
// upstream, and returns, by emit, how many of its samples, from the first,
// every upstream settled.
func (h *Handler) sendRetries(ctx context.Context, in http.Header, ups []*Upstream, proto remoteapi.WriteMessageType, emits []series.Emit, budget int) []int {
	per := make([][]int, len(ups))
	var wg sync.WaitGroup
	for i, u := range ups {
		wg.Go(func() { per[i] = h.retryUpstream(ctx, in, u, proto, emits, budget) })
	}
	wg.Wait()
	taken := allSamples(emits)
	for _, settled := range per {
		for i := range taken {
			taken[i] = min(taken[i], settled[i])
		}
	}
	return taken
}

// allSamples is, by emit, how many samples it has.
func allSamples(emits []series.Emit) []int {
	n := make([]int, len(emits))
	for i, e := range emits {
		n[i] = len(e.Samples)
	}
	return n
}

// retryUpstream settles the retries with one upstream, within the budget.
func (h *Handler) retryUpstream(ctx context.Context, in http.Header, u *Upstream, proto remoteapi.WriteMessageType, emits []series.Emit, budget int) []int {
	b := &retryBisection{h: h, ctx: ctx, in: in, u: u, proto: proto, emits: emits,
		budget: budget, settled: make([]int, len(emits))}
	var all []retrySpan
	for i, e := range emits {
		if len(e.Samples) > 0 {
			all = append(all, retrySpan{emit: i, to: len(e.Samples)})
		}
	}
	if len(all) > 0 {
		b.resolve(all)
	}
	if b.refused > 0 {
		h.metrics.retriesRefused.WithLabelValues(u.name).Add(float64(b.refused))
		h.logger.Warn("upstream refused re-sent merged samples (it has them, or never will); not sent again",
			"upstream", u.name, "samples", b.refused, "code", b.last.code, "err", b.last.msg)
	}
	return b.settled
}

// resolve sends part and, on a 4xx to more than one sample, its halves, the
// earlier first: whole emits while the part holds several, then an emit's
// samples. It reports false when it stopped (the budget is spent, or the
// upstream failed in a way a retry may fix): nothing after is sent.
func (b *retryBisection) resolve(part []retrySpan) bool {
	if b.budget == 0 {
		return false
	}
	b.budget--
	r := b.send(part)
	switch {
	case r.ok():
	case r.err == nil && r.code/100 == 4 && r.code != http.StatusTooManyRequests:
		b.h.metrics.retryRequestsRefused.WithLabelValues(b.u.name).Inc()
		if left, right, ok := split(part); ok {
			return b.resolve(left) && b.resolve(right)
		}
		b.refused++
		b.last = r
	default:
		return false
	}
	for _, s := range part {
		b.settled[s.emit] = s.to
	}
	return true
}

// split halves part; ok is false for a single sample.
func split(part []retrySpan) (left, right []retrySpan, ok bool) {
	if len(part) > 1 {
		mid := len(part) / 2
		return part[:mid:mid], part[mid:], true
	}
	s := part[0]
	if s.to-s.from < 2 {
		return nil, nil, false
	}
	mid := s.from + (s.to-s.from)/2
	return []retrySpan{{s.emit, s.from, mid}}, []retrySpan{{s.emit, mid, s.to}}, true
}

// send posts the part's samples to the upstream in a request of their own.
func (b *retryBisection) send(part []retrySpan) reply {
	emits := make([]series.Emit, len(part))
	for i, s := range part {
		e := b.emits[s.emit]
		e.Samples = e.Samples[s.from:s.to]
		emits[i] = e
	}
	raw, err := encodeEmits(b.proto, emits)
	if err != nil {
		return reply{upstream: b.u.name, code: http.StatusInternalServerError, err: err}
	}
	p := &payloads{proto: b.proto, raw: raw, compressed: compress(nil, raw)}
	return b.h.send(b.ctx, b.in, b.u, p, true)
}
