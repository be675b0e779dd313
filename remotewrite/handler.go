package remotewrite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/s2"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"

	"github.com/rwfix/rwfix/remotewrite/series"
	"github.com/rwfix/rwfix/remotewrite/wire"
)

// Default limits, as Prometheus' own receiver (client_golang exp/api/remote)
// sets them: 32 MiB decoded. A Prometheus sender's batches are far smaller
// (2,000 samples, well under 1 MiB).
const (
	DefaultMaxBodyBytes    = 32 << 20
	DefaultMaxDecodedBytes = 32 << 20
)

// Option configures a Handler.
type Option func(*Handler)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(h *Handler) { h.logger = l } }

// WithMetrics sets the metrics (default: unregistered).
func WithMetrics(m *Metrics) Option { return func(h *Handler) { h.metrics = m } }

// WithInflightLimits caps the requests and the compressed bytes being handled
// at once (0: no cap). Beyond either, requests are answered 503 with
// Retry-After, so that memory stays bounded under a flood and the sender
// backs off and retries (Prometheus retries every 5xx; 429 only when
// configured to).
func WithInflightLimits(requests int, bytes int64) Option {
	return func(h *Handler) { h.maxInflight, h.maxInflightBytes = int64(requests), bytes }
}

// WithDryRun makes the handler forward every request as it came, while still
// running the rules: what they would have repaired, merged or dropped is
// counted (rwfix_dry_run_series_total) and logged, at most every 10 s, with
// an example. For a safe roll-out.
func WithDryRun(on bool) Option { return func(h *Handler) { h.dryRun = on } }

// WithCapture records incoming bodies (as received) to dir, as NNNNNN.rw1 or
// .rw2, until maxRequests or maxBytes is reached ("" : off).
func WithCapture(dir string, maxRequests int, maxBytes int64) Option {
	return func(h *Handler) { h.captureDir, h.captureMaxReq, h.captureMaxBytes = dir, int64(maxRequests), maxBytes }
}

// WithBlankShare sets the largest share of a forwarded request's bytes that
// may be series blanked in place rather than cut out (see blankTag in
// splice.go): 0 cuts every dropped or changed series out and compresses the
// request anew. Default: DefaultBlankShare.
func WithBlankShare(share float64) Option { return func(h *Handler) { h.blankShare = share } }

// WithLimits sets the compressed and decompressed body limits in bytes.
func WithLimits(maxBody, maxDecoded int) Option {
	return func(h *Handler) { h.maxBody, h.maxDecoded = maxBody, maxDecoded }
}

// Handler is the remote-write receiver: decode, repair, forward, answer.
type Handler struct {
	logger     *slog.Logger
	metrics    *Metrics
	maxBody    int
	maxDecoded int

	dryRun     bool
	blankShare float64

	observer      Observer // nil: none (observe.go)
	maxChanges    int
	observeBudget *observeBudget

	captureDir                     string
	captureMaxReq, captureMaxBytes int64
	captured, capturedBytes        atomic.Int64
	lastDryLog                     atomic.Int64 // unix nanos of the last dry-run log line

	maxInflight, maxInflightBytes int64
	inflight, inflightBytes       atomic.Int64

	route  atomic.Pointer[route]
	limits atomic.Pointer[Limits]
	// partitions remembers, by merge partition, its last request's
	// forwarded headers and protocol, for FlushIdle (flush.go); partMu
	// orders their changes with their pruning. unknownOrigin: a flush could
	// not send for a partition, and warned (once).
	partitions    sync.Map
	partMu        sync.Mutex
	unknownOrigin atomic.Bool
	writer        http.Handler // client_golang's handler: method, content type, Written headers
}

// route is what a reload swaps atomically: the rules and the upstreams.
type route struct {
	repairer  series.Repairer
	flusher   series.IdleFlusher // the repairer's, if it holds samples for partitions
	upstreams []*Upstream
}

// NewHandler returns a handler that repairs with r (nil: no repair) and
// forwards to upstreams.
func NewHandler(r series.Repairer, upstreams []*Upstream, opts ...Option) *Handler {
	h := &Handler{
		logger:     slog.New(slog.DiscardHandler),
		maxBody:    DefaultMaxBodyBytes,
		maxDecoded: DefaultMaxDecodedBytes,
		blankShare: DefaultBlankShare,
	}
	for _, o := range opts {
		o(h)
	}
	if h.metrics == nil {
		h.metrics = NewMetrics(nil)
	}
	h.Update(r, upstreams)
	lim := DefaultLimits()
	h.limits.Store(&lim)
	h.writer = remoteapi.NewWriteHandler(store{h}, remoteapi.MessageTypes{ProtoV1, ProtoV2},
		remoteapi.WithWriteHandlerLogger(slog.New(withoutStoreErrors{h.logger.Handler()})),
		remoteapi.WithWriteHandlerMiddlewares(h.readBody))
	return h
}

// Update swaps the rules and upstreams; requests in flight finish with the
// old ones.
func (h *Handler) Update(r series.Repairer, upstreams []*Upstream) {
	f, _ := r.(series.IdleFlusher)
	h.route.Store(&route{repairer: h.observed(r), flusher: f, upstreams: upstreams})
}

// UpdateLimits swaps the request limits.
func (h *Handler) UpdateLimits(l Limits) { h.limits.Store(&l) }

// reject answers a refused request and counts it by reason.
func (h *Handler) reject(w http.ResponseWriter, code int, reason, msg string) {
	h.metrics.rejected.WithLabelValues(reason).Inc()
	h.observeReject(reason, msg)
	http.Error(w, msg, code)
}

// ServeHTTP counts the request by protocol and answer, then hands it to
// client_golang's write handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	proto := "unknown"
	if p, err := remoteapi.ParseProtoMsg(contentType(r)); err == nil {
		proto = protoLabel(string(p))
	} else if r.Method == http.MethodPost {
		h.metrics.rejected.WithLabelValues(ReasonUnsupportedMedia).Inc() // client_golang answers 415
	}
	sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
	h.writer.ServeHTTP(sw, r)
	h.metrics.requests.WithLabelValues(proto, strconv.Itoa(sw.code)).Inc()
	h.metrics.requestDuration.WithLabelValues(proto).Observe(time.Since(start).Seconds())
}

func contentType(r *http.Request) string {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		return ct
	}
	return wire.ContentTypeV1
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// readAll reads at most limit+1 bytes into buf (a pooled buffer), growing
// it once to the announced length when the sender gave one (Prometheus does).
func readAll(buf []byte, rd io.Reader, announced int64, limit int) ([]byte, error) {
	if announced > 0 && announced <= int64(limit) && int64(cap(buf)) < announced {
		buf = make([]byte, 0, announced)
	}
	b := bytes.NewBuffer(buf[:0])
	_, err := b.ReadFrom(io.LimitReader(rd, int64(limit)+1))
	return b.Bytes(), err
}

type bodyKey struct{}

// body is the request as it came (compressed) and decompressed.
type body struct{ compressed, raw []byte }

// readBody replaces client_golang's snappy middleware: it also keeps the
// compressed bytes, so that a batch no rule changes is forwarded as it came,
// and applies rwfix's own limits.
func (h *Handler) readBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			next.ServeHTTP(w, r) // client_golang answers 405.
			return
		}
		size := max(r.ContentLength, 0)
		inReq, inBytes := h.inflight.Add(1), h.inflightBytes.Add(size)
		defer h.inflight.Add(-1)
		defer h.inflightBytes.Add(-size)
		// One request is always let through, however large (the body limit
		// bounds it), so that a big batch cannot be refused forever.
		if (h.maxInflight > 0 && inReq > h.maxInflight) || (h.maxInflightBytes > 0 && inBytes > h.maxInflightBytes && inReq > 1) {
			if rt := h.route.Load(); rt != nil {
				retrying(rt.repairer, partition(r.Header, rt.upstreams))
			}
			w.Header().Set("Retry-After", "1")
			h.reject(w, http.StatusServiceUnavailable, ReasonOverloaded,
				fmt.Sprintf("overloaded: %d requests / %d bytes in flight (limits %d / %d); retry later", inReq, inBytes, h.maxInflight, h.maxInflightBytes))
			return
		}
		if enc := r.Header.Get("Content-Encoding"); enc != "" && enc != string(remoteapi.SnappyBlockCompression) {
			h.reject(w, http.StatusUnsupportedMediaType, ReasonUnsupportedMedia, fmt.Sprintf("Content-Encoding %q is not supported; only snappy (block format) is", enc))
			return
		}
		if r.ContentLength > int64(h.maxBody) {
			h.reject(w, http.StatusRequestEntityTooLarge, ReasonBodyTooLarge, fmt.Sprintf("request body of %d bytes exceeds the %d bytes limit", r.ContentLength, h.maxBody))
			return
		}
		cbuf := compressedPool.Get().(*[]byte)
		defer compressedPool.Put(cbuf)
		compressed, err := readAll(*cbuf, r.Body, r.ContentLength, h.maxBody)
		*cbuf = compressed[:0]
		if err != nil {
			http.Error(w, "reading request body: "+err.Error(), http.StatusBadRequest)
			return
		}
		if len(compressed) > h.maxBody {
			h.reject(w, http.StatusRequestEntityTooLarge, ReasonBodyTooLarge, fmt.Sprintf("request body exceeds the %d bytes limit", h.maxBody))
			return
		}
		// Check the size that the snappy header announces before allocating.
		n, err := s2.DecodedLen(compressed)
		if err != nil {
			h.reject(w, http.StatusBadRequest, ReasonCorrupt, fmt.Sprintf("%v: snappy: %v", ErrCorrupt, err))
			return
		}
		if n > h.maxDecoded {
			h.reject(w, http.StatusRequestEntityTooLarge, ReasonDecodedTooLarge, fmt.Sprintf("decompressed body of %d bytes exceeds the %d bytes limit", n, h.maxDecoded))
			return
		}
		// s2.Decode reads snappy blocks (s2 is rwfix's encoder too). On this
		// workload it is as fast as golang/snappy: BenchmarkCodecs/decode,
		// 12 runs each on 2 shared cores, medians 199 and 191 µs per
		// 2,000-sample request, within the runs' spread (184-250 µs).
		// The decompressed request never leaves the handler (upstreams get a
		// compressed copy, labels kept beyond the request are copies), so
		// its buffer is pooled.
		buf := bufPool.Get().(*[]byte)
		defer bufPool.Put(buf)
		raw, err := s2.Decode((*buf)[:cap(*buf)], compressed)
		if err != nil {
			h.reject(w, http.StatusBadRequest, ReasonCorrupt, fmt.Sprintf("%v: snappy: %v", ErrCorrupt, err))
			return
		}
		*buf = raw[:0]
		r.Header.Del("Content-Encoding")
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), bodyKey{}, body{compressed, raw})))
	})
}

// store adapts Handler to client_golang's write handler.
type store struct{ h *Handler }

func (s store) Store(r *http.Request, proto remoteapi.WriteMessageType) (*remoteapi.WriteResponse, error) {
	return s.h.store(r, proto)
}

func (h *Handler) store(r *http.Request, proto remoteapi.WriteMessageType) (*remoteapi.WriteResponse, error) {
	resp := remoteapi.NewWriteResponse()
	in, _ := r.Context().Value(bodyKey{}).(body)
	s, err := scan(proto, in.raw)
	if err != nil {
		h.metrics.rejected.WithLabelValues(ReasonCorrupt).Inc()
		h.observeReject(ReasonCorrupt, err.Error())
		resp.SetStatusCode(http.StatusBadRequest)
		return resp, err
	}
	defer s.release()
	h.capture(proto, in.compressed)
	if err := s.validate(h.limits.Load()); err != nil {
		var re *RejectError
		if errors.As(err, &re) {
			h.metrics.rejected.WithLabelValues(re.Reason).Inc()
			h.observeReject(re.Reason, err.Error())
		}
		resp.SetStatusCode(http.StatusBadRequest)
		return resp, err
	}
	if n := s.sortLabels(); n > 0 {
		h.metrics.sorted.Add(float64(n))
	}
	for _, reason := range s.invalid {
		h.metrics.invalid.WithLabelValues(reason).Inc()
	}
	c := s.c
	pl := protoLabel(string(proto))
	h.metrics.series.WithLabelValues(pl).Add(float64(c.series))
	h.metrics.samples.WithLabelValues(pl).Add(float64(c.samples))
	h.metrics.histograms.WithLabelValues(pl).Add(float64(c.histograms))
	h.metrics.exemplars.WithLabelValues(pl).Add(float64(c.exemplars))

	rt := h.route.Load()
	var (
		res series.Result
		mr  *mergeRun
	)
	if rt.repairer != nil {
		part := partition(r.Header, rt.upstreams)
		if rt.flusher != nil {
			h.rememberPartition(part, r.Header, rt, proto)
		}
		res, mr = applyRepair(s, rt.repairer, part)
	}
	// The merge state learns, once every upstream answered, what of its
	// samples was taken (a panic on the way counts as not taken).
	var (
		mergeOK    bool
		retryTaken []int
	)
	defer func() { mr.done(mergeOK, retryTaken) }()
	if h.dryRun {
		// Nothing the merge made is sent in a dry run: its samples count as
		// taken, so that its state does not pile them up.
		mergeOK, retryTaken = true, allSamples(mr.retries())
	}
	h.metrics.collisions.Add(float64(res.Collisions))
	if !h.dryRun && mr.waiting() {
		// A retired queue of a label set the request carries raw is not
		// settled, and goes on another request (or partition): the raw
		// sample must not overtake it. The sender sends the request again.
		retrying(rt.repairer, partition(r.Header, rt.upstreams))
		resp.SetStatusCode(http.StatusServiceUnavailable)
		h.logger.Warn("a re-sent merged sample of a series the request carries is not settled yet; the sender will retry")
		return resp, errors.New("samples that go before the request not settled")
	}

	p := &payloads{proto: proto}
	changed := s.changed()
	if changed && h.dryRun {
		h.dryRunReport(res)
		changed = false
	}
	var retriesSettled chan []int
	if retries := mr.retries(); len(retries) > 0 && !h.dryRun {
		// Merged samples that the upstream may have already go in requests
		// of their own, in parallel: a 4xx to them must not fail the
		// sender's batch.
		retriesSettled = make(chan []int, 1)
		switch {
		case mr.backlog() > 0 || mr.sequential():
			// The retries go first, and if an upstream did not settle
			// what must go first, nothing of the request is forwarded: the
			// sender sends it all again. The budget settles every sample
			// unless an upstream fails.
			//   - The sender's own samples among them (after a start
			//     without state): none of the request may be stored twice
			//     (a batch with two samples of a series would be refused as
			//     out of order the second time, and dropped).
			//   - Sequential: the request carries, raw, a label set whose
			//     last merged samples are among the retries; a raw sample
			//     stored before them would make them out of order for good:
			//     refused, and lost (sim all seed 9000133: an upstream
			//     failing now and then stopped the round of retries, and
			//     the raw sample of the reload to keep_distinct went on).
			taken := h.sendRetries(r.Context(), r.Header, rt.upstreams, proto, retries, fullBisection(retries))
			settled := mr.backlogSettled(taken)
			if mr.backlog() == 0 {
				settled = slices.Equal(taken, allSamples(retries))
			}
			if !settled {
				retryTaken = taken
				retrying(rt.repairer, partition(r.Header, rt.upstreams))
				resp.SetStatusCode(http.StatusServiceUnavailable)
				h.logger.Warn("upstream did not settle the samples that go before the request; the sender will retry")
				return resp, errors.New("samples that go before the request not settled")
			}
			retriesSettled <- taken
		default:
			go func() {
				retriesSettled <- h.sendRetries(r.Context(), r.Header, rt.upstreams, proto, retries, maxRetryRequests)
			}()
		}
	}
	var replies []reply
	switch {
	case changed && s.forwarded() == 0 && len(s.fields) == len(s.series):
		// Rules dropped or merged every series away: nothing to send.
		h.metrics.forwarded.WithLabelValues("none").Inc()
		mergeOK = true
	case changed:
		s.blank = h.blankShare
		// Blanked in place, only the tail is encoded (see encodeForward):
		// a buffer of compressedPool's size, not a request's.
		blank, whole := s.blanking()
		pool := &bufPool
		if blank && whole {
			pool = &compressedPool
		}
		buf, cbuf := pool.Get().(*[]byte), compressedPool.Get().(*[]byte)
		defer pool.Put(buf)
		defer compressedPool.Put(cbuf)
		var head []byte
		head, *buf = s.encodeForward((*buf)[:0], blank, whole)
		h.metrics.blanked.Add(float64(s.blanked))
		*cbuf, _ = s.compressForward(*cbuf, in.compressed, head, *buf) // the sender's elements reused where unchanged
		p.raw, p.tail, p.compressed = *buf, nil, *cbuf
		if head != nil {
			p.raw, p.tail = head, *buf
		}
		h.metrics.forwarded.WithLabelValues("reencoded").Inc()
	default:
		p.raw, p.compressed = in.raw, in.compressed
		h.metrics.forwarded.WithLabelValues("original").Inc()
	}
	if p.compressed != nil {
		hasData := c.samples+c.histograms+c.exemplars > 0 && (!changed || s.forwarded() > 0)
		replies = h.forward(r.Context(), r.Header, rt.upstreams, p, hasData)
	}
	if retriesSettled != nil {
		retryTaken = <-retriesSettled
	}
	if replies == nil {
		return h.written(resp, c), nil
	}
	code, msg, retryAfter := merge(replies)
	if code/100 == 2 {
		mergeOK = true
		return h.written(resp, c), nil
	}
	resp.SetStatusCode(code)
	if retryAfter != "" {
		resp.SetExtraHeader("Retry-After", retryAfter)
	}
	retry := code/100 == 5 || code == http.StatusTooManyRequests
	if retry {
		retrying(rt.repairer, partition(r.Header, rt.upstreams))
	}
	h.logFailures(replies, code, retry)
	return resp, errors.New(msg)
}

// logFailures logs each upstream that did not take the request, once (the
// embedded write handler's own log of the error is filtered out: see
// withoutStoreErrors): a WARN when the sender retries (answered 5xx or 429),
// an ERROR when it drops the batch (4xx).
func (h *Handler) logFailures(replies []reply, answered int, retry bool) {
	for _, r := range replies {
		if r.ok() {
			continue
		}
		answer := r.msg
		code := strconv.Itoa(r.code)
		switch {
		case r.timeout:
			code, answer = "timeout", r.err.Error()
		case r.err != nil:
			code, answer = "no answer", r.err.Error()
		}
		if retry {
			h.logger.Warn("upstream failed; the sender will retry", "upstream", r.upstream, "code", code, "answer", answer, "answered", answered)
		} else {
			h.logger.Error("upstream refused the request; the sender drops it", "upstream", r.upstream, "code", code, "answer", answer, "answered", answered)
		}
	}
}

// withoutStoreErrors is the embedded write handler's logger: h's, less its
// "Error while storing" record, which repeats what logFailures said.
type withoutStoreErrors struct{ slog.Handler }

func (w withoutStoreErrors) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "Error while storing the remote write request" {
		return nil
	}
	return w.Handler.Handle(ctx, r)
}

func (w withoutStoreErrors) WithAttrs(as []slog.Attr) slog.Handler {
	return withoutStoreErrors{w.Handler.WithAttrs(as)}
}

func (w withoutStoreErrors) WithGroup(name string) slog.Handler {
	return withoutStoreErrors{w.Handler.WithGroup(name)}
}

// partition is the merge partition of a request: the values of the headers
// that the upstreams forward from the sender (a tenant, X-Scope-OrgID), so
// that series of different tenants never merge and a merged sample only
// rides on a request of its own tenant.
func partition(in http.Header, ups []*Upstream) string {
	var b []byte
	for _, u := range ups {
		for _, name := range u.forward {
			b = append(b, in.Get(name)...)
			b = append(b, 0xff)
		}
	}
	return string(b)
}

// capture records a request body for `rwfix replay`, within the budget.
func (h *Handler) capture(proto remoteapi.WriteMessageType, body []byte) {
	if h.captureDir == "" {
		return
	}
	n := h.captured.Add(1)
	if n > h.captureMaxReq || h.capturedBytes.Add(int64(len(body))) > h.captureMaxBytes {
		return
	}
	name := filepath.Join(h.captureDir, fmt.Sprintf("%06d%s", n, wire.CaptureExt(proto)))
	if err := os.WriteFile(name, body, 0o644); err != nil {
		h.logger.Error("capture failed", "file", name, "err", err)
	}
}

// dryRunReport counts what the rules would have done and logs it, at most
// every 10 s, with one changed series as an example.
func (h *Handler) dryRunReport(res series.Result) {
	h.metrics.dryRun.WithLabelValues("repaired").Add(float64(res.Repaired))
	h.metrics.dryRun.WithLabelValues("merged").Add(float64(res.Merged))
	h.metrics.dryRun.WithLabelValues("dropped").Add(float64(res.Dropped))
	now := time.Now().UnixNano()
	last := h.lastDryLog.Load()
	if now-last < int64(10*time.Second) || !h.lastDryLog.CompareAndSwap(last, now) {
		return
	}
	example := ""
	switch before, after := res.Example[0], res.Example[1]; {
	case before.IsEmpty():
	case after.IsEmpty():
		example = before.String() + " -> dropped"
	default:
		example = before.String() + " -> " + after.String()
	}
	h.logger.Info("dry run: forwarded unchanged; the rules would have changed this request",
		"repaired", res.Repaired, "merged", res.Merged, "dropped", res.Dropped, "example", example)
}

// written fills the RW 2.0 Written headers: every sample of the request was
// either accepted by every upstream, merged into the merge state, or dropped
// by a rule on purpose, so rwfix takes responsibility for all of them.
// Copying an upstream's own counts would be wrong: after a merge or a drop
// they are smaller, and the sender would count the difference as failed.
func (h *Handler) written(resp *remoteapi.WriteResponse, c counts) *remoteapi.WriteResponse {
	resp.Samples, resp.Histograms, resp.Exemplars = c.samples, c.histograms, c.exemplars
	return resp
}

// payloads holds what is sent: the request in its own protocol, and, on
// first need, its RW 1.0 conversion.
type payloads struct {
	proto      remoteapi.WriteMessageType
	raw        []byte // uncompressed, in proto: raw followed by tail
	tail       []byte
	compressed []byte

	onceV1 sync.Once
	encV1  []byte
	errV1  error
}

func (p *payloads) get(proto remoteapi.WriteMessageType) ([]byte, error) {
	if proto == p.proto {
		return p.compressed, nil
	}
	// RW 2.0 -> 1.0 for an upstream that needs it: rare, so through the
	// generated structs.
	p.onceV1.Do(func() {
		b, err := decode(p.proto, slices.Concat(p.raw, p.tail))
		if err != nil {
			p.errV1 = err
			return
		}
		req, err := b.toV1()
		if err != nil {
			p.errV1 = err
			return
		}
		raw, err := req.Marshal()
		p.encV1, p.errV1 = compress(nil, raw), err
	})
	return p.encV1, p.errV1
}

// forward sends the batch to every upstream in parallel.
func (h *Handler) forward(ctx context.Context, in http.Header, ups []*Upstream, p *payloads, hasData bool) []reply {
	replies := make([]reply, len(ups))
	var wg sync.WaitGroup
	for i, u := range ups {
		wg.Go(func() { replies[i] = h.send(ctx, in, u, p, hasData) })
	}
	wg.Wait()
	return replies
}

// send delivers the batch to one upstream, falling back to RW 1.0 when the
// upstream shows that it does not speak RW 2.0: it answers 415, or it answers
// 2xx without the Written headers that every RW 2.0 receiver must send (an
// RW 1.0-only receiver decodes an RW 2.0 body as an empty RW 1.0 request and
// silently stores nothing).
func (h *Handler) send(ctx context.Context, in http.Header, u *Upstream, p *payloads, hasData bool) reply {
	proto := p.proto
	if proto == ProtoV2 && u.v1Only.Load() {
		proto = ProtoV1
	}
	r := h.post(ctx, in, u, p, proto)
	if proto == ProtoV2 && r.err == nil &&
		(r.code == http.StatusUnsupportedMediaType || (r.code/100 == 2 && !r.confirmed && hasData)) {
		if !u.v1Only.Swap(true) {
			h.metrics.upstreamFallbacks.WithLabelValues(u.name).Inc()
			h.observeFallback(u, r)
			h.logger.Warn("upstream does not speak remote-write 2.0; converting to 1.0 for it from now on",
				"upstream", u.name, "code", r.code)
		}
		r = h.post(ctx, in, u, p, ProtoV1)
	}
	return r
}

func (h *Handler) post(ctx context.Context, in http.Header, u *Upstream, p *payloads, proto remoteapi.WriteMessageType) reply {
	body, err := p.get(proto)
	if err != nil {
		return reply{upstream: u.name, code: http.StatusInternalServerError, msg: "encoding: " + err.Error()}
	}
	start := time.Now()
	r := u.post(ctx, proto, body, in)
	h.metrics.upstreamDuration.WithLabelValues(u.name).Observe(time.Since(start).Seconds())
	h.observeUpstream(u, proto, r, time.Since(start))
	code := strconv.Itoa(r.code)
	switch {
	case r.timeout:
		code = "timeout"
	case r.err != nil:
		code = "error"
	}
	h.metrics.upstreamRequests.WithLabelValues(u.name, protoLabel(string(proto)), code).Inc()
	return r
}
