package remotewrite

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"

	"github.com/rwfix/rwfix/remotewrite/series"
)

// A merged sample goes upstream riding on a later request of its partition
// (tenant: the values of the forwarded headers). If a tenant's sender stops
// right after a None sample, that request never comes: the sample would be
// held forever, and every request of every tenant would run the merge step.
// So rwfix sends such samples on its own, in a request with the partition's
// forwarded headers, remembered from its last request.

// IdleFlushEvery is how often RunIdleFlush looks for idle partitions: far
// below the merge's wait (at least 10 s), and cheap when nothing is pending.
const IdleFlushEvery = time.Second

// partitionMemory is how long a partition's headers are kept after its last
// request while nothing of it is pending.
const partitionMemory = 10 * time.Minute

// seenPartition is what the last request of a partition tells a flush.
type seenPartition struct {
	header http.Header // the forwarded headers, as the sender sent them
	proto  remoteapi.WriteMessageType
	at     atomic.Int64 // its last request (unix nanoseconds)
}

// rememberPartition notes a request of partition part. The partition is
// made of the forwarded headers' values, so they are copied only the first
// time (or when the sender changes protocol).
func (h *Handler) rememberPartition(part string, in http.Header, ups []*Upstream, proto remoteapi.WriteMessageType) {
	now := time.Now().UnixNano()
	if v, ok := h.partitions.Load(part); ok {
		if sp := v.(*seenPartition); sp.proto == proto {
			sp.at.Store(now)
			return
		}
	}
	sp := &seenPartition{header: http.Header{}, proto: proto}
	for _, u := range ups {
		for _, name := range u.forward {
			if vals := in.Values(name); len(vals) > 0 {
				sp.header[http.CanonicalHeaderKey(name)] = slices.Clone(vals)
			}
		}
	}
	sp.at.Store(now)
	h.partitions.Store(part, sp)
}

// RunIdleFlush calls FlushIdle every interval until ctx is done; a flush in
// progress then fails, and its samples stay queued in the merge state.
func (h *Handler) RunIdleFlush(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.FlushIdle(ctx)
		}
	}
}

// FlushIdle sends what the merge holds for every idle partition, each in a
// request of its own.
func (h *Handler) FlushIdle(ctx context.Context) {
	rt := h.route.Load()
	if rt.flusher == nil {
		return
	}
	pending := rt.flusher.PendingPartitions()
	for _, part := range slices.Sorted(maps.Keys(pending)) {
		if pending[part] && ctx.Err() == nil {
			h.flushPartition(ctx, rt, part)
		}
	}
	limit := time.Now().Add(-partitionMemory).UnixNano()
	h.partitions.Range(func(k, v any) bool {
		if _, ok := pending[k.(string)]; !ok && v.(*seenPartition).at.Load() < limit {
			h.partitions.Delete(k)
		}
		return true
	})
}

// flushPartition sends what the merge holds for partition part, as its
// next request would have carried it: the due samples in one request, the
// retries in requests of their own.
func (h *Handler) flushPartition(ctx context.Context, rt *route, part string) {
	header, proto, known := http.Header{}, ProtoV1, false
	if v, ok := h.partitions.Load(part); ok {
		sp := v.(*seenPartition)
		header, proto, known = sp.header, sp.proto, true
	} else if part != partition(header, rt.upstreams) {
		// Not seen by this process (restored from the log): without its
		// headers the request could land in another tenant. Its own next
		// request carries the samples.
		return
	}
	emits, run := rt.flusher.Flush(part)
	if run == nil {
		return
	}
	h.metrics.idleFlushes.Inc()
	var (
		ok    bool
		taken []int
	)
	mr := &mergeRun{run: run}
	defer func() { mr.done(ok, taken) }()
	retries := run.Retries()
	if !known && (startStamped(emits) || startStamped(retries)) {
		// Not seen by this process, so its protocol is not known either;
		// but start timestamps only come in RW 2.0 requests: its sender
		// speaks RW 2.0, and RW 1.0 would drop them (send converts for an
		// upstream that does not speak it).
		proto = ProtoV2
	}
	if h.dryRun {
		ok, taken = true, allSamples(retries) // as in store: nothing merged is sent
		return
	}
	var settled chan []int
	if len(retries) > 0 {
		settled = make(chan []int, 1)
		go func() { settled <- h.sendRetries(ctx, header, rt.upstreams, proto, retries, maxRetryRequests) }()
	}
	ok = true
	if len(emits) > 0 {
		raw, err := encodeEmits(proto, emits)
		if err != nil {
			ok = false
		} else {
			for _, r := range h.forward(ctx, header, rt.upstreams, &payloads{proto: proto, raw: raw, compressed: compress(nil, raw)}, true) {
				ok = ok && r.ok()
			}
		}
	}
	if settled != nil {
		taken = <-settled
	}
	if !ok {
		h.logger.Warn("sending the merged samples of an idle partition failed; they stay queued", "samples", len(emits))
	}
}

// startStamped reports whether some sample of emits carries an RW 2.0
// start timestamp.
func startStamped(emits []series.Emit) bool {
	for _, e := range emits {
		for _, p := range e.Samples {
			if p.ST != 0 {
				return true
			}
		}
	}
	return false
}
