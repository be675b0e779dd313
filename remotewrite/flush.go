package remotewrite

import (
	"context"
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"
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
// forwarded headers and protocol, remembered from its last request.
//
// After a restart the merge state, replayed from its log, may hold samples
// of partitions this process has not seen a request of: a tenant whose
// sender stopped, or the orphans of a forward_headers reload, whose old
// partition no request will name again (relabel/retire.go). The state keeps
// how each partition's requests come (series.Origin: the protocol and the
// forwarded headers) in its log, so that the flush sends them as before
// the restart. A log written before rwfix kept them has none: see
// flushPartition for what is sent then.

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
	rt     *route       // the configuration it came under
	at     atomic.Int64 // its last request (unix nanoseconds); forgotten: pruned
}

// forgotten marks a seenPartition that FlushIdle pruned.
const forgotten = math.MinInt64

// touch records a request of the partition at now, unless it was pruned.
func (sp *seenPartition) touch(now int64) bool {
	for {
		at := sp.at.Load()
		if at == forgotten {
			return false
		}
		if sp.at.CompareAndSwap(at, now) {
			return true
		}
	}
}

// rememberPartition notes a request of partition part. The partition is
// made of the forwarded headers' values, so they are copied only the first
// time, when the sender changes protocol, or after a reload (the same
// values may come in other headers); and told to the merge state, which
// keeps them in its log for a flush after a restart.
func (h *Handler) rememberPartition(part string, in http.Header, rt *route, proto remoteapi.WriteMessageType) {
	now := time.Now().UnixNano()
	if v, ok := h.partitions.Load(part); ok {
		if sp := v.(*seenPartition); sp.proto == proto && sp.rt == rt && sp.touch(now) {
			return
		}
	}
	h.partMu.Lock()
	defer h.partMu.Unlock()
	sp := &seenPartition{header: http.Header{}, proto: proto, rt: rt}
	for _, u := range rt.upstreams {
		for _, name := range u.forward {
			if vals := in.Values(name); len(vals) > 0 {
				sp.header[http.CanonicalHeaderKey(name)] = slices.Clone(vals)
			}
		}
	}
	sp.at.Store(now)
	h.partitions.Store(part, sp)
	rt.flusher.KeepOrigin(part, series.Origin{Proto: string(proto), Header: sp.header})
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
	// A partition pruned here with nothing pending is forgotten by the merge
	// state too; its next request (rememberPartition waits for the prune
	// under partMu) records it again, before it can make anything pending.
	limit := time.Now().Add(-partitionMemory).UnixNano()
	h.partMu.Lock()
	defer h.partMu.Unlock()
	h.partitions.Range(func(k, v any) bool {
		part, sp := k.(string), v.(*seenPartition)
		if _, ok := pending[part]; ok {
			return true
		}
		if at := sp.at.Load(); at < limit && sp.at.CompareAndSwap(at, forgotten) {
			h.partitions.Delete(part)
			rt.flusher.ForgetOrigin(part)
		}
		return true
	})
}

// origin returns how partition part's requests come: its forwarded headers
// (known false: not known) and protocol ("": not known).
func (h *Handler) origin(rt *route, part string) (header http.Header, proto remoteapi.WriteMessageType, known bool) {
	if v, ok := h.partitions.Load(part); ok {
		sp := v.(*seenPartition)
		return sp.header, sp.proto, true
	}
	if o, ok := rt.flusher.Origin(part); ok {
		// Kept in the merge log by a process before this one.
		if p := remoteapi.WriteMessageType(o.Proto); p == ProtoV1 || p == ProtoV2 {
			proto = p
		}
		return http.Header(o.Header), proto, true
	}
	// A log written before rwfix kept origins. The partition's name is the
	// values of the forwarded headers, each followed by 0xff (a value with
	// 0xff in it would add one): without any value, the sender sent none of
	// them, whatever their names were. And when the upstreams forward no
	// header now, none goes upstream whatever the sender sent.
	if strings.Count(part, "\xff") == len(part) || !forwardsHeaders(rt.upstreams) {
		return http.Header{}, "", true
	}
	// Else which tenant the samples are of cannot be told. A Prometheus
	// user would rather have them late, or lost, than stored in another
	// tenant (or refused there, failing nothing but showing them to the
	// wrong one): they stay held, for the partition's next request, or for
	// the adoption of an orphan by a request that carries its series (with
	// one tenant, the usual case, its first request does).
	return nil, "", false
}

// forwardsHeaders reports whether some upstream forwards a sender's header.
func forwardsHeaders(ups []*Upstream) bool {
	for _, u := range ups {
		if len(u.forward) > 0 {
			return true
		}
	}
	return false
}

// flushPartition sends what the merge holds for partition part, as its
// next request would have carried it: the due samples in one request, the
// retries in requests of their own.
func (h *Handler) flushPartition(ctx context.Context, rt *route, part string) {
	header, proto, known := h.origin(rt, part)
	if !known {
		if !h.unknownOrigin.Swap(true) { // its values may be secrets: not logged
			h.logger.Warn("merged samples held for a tenant whose forwarded headers are not known (merge state of an older rwfix); they go with its next request")
		}
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
	if proto == "" {
		// Its protocol is not known (a log written before rwfix kept it);
		// but start timestamps only come in RW 2.0 requests: its sender
		// speaks RW 2.0, and RW 1.0 would drop them (send converts for an
		// upstream that does not speak it).
		proto = ProtoV1
		if startStamped(emits) || startStamped(retries) {
			proto = ProtoV2
		}
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
