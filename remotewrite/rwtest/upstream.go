package rwtest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// Request is one request a RecordingUpstream received.
type Request struct {
	Body        []byte                     // as received (snappy-compressed)
	Raw         []byte                     // Body decompressed; nil if it is not snappy
	ContentType string                     // the Content-Type header
	Proto       remoteapi.WriteMessageType // from ContentType; "" if it is not remote-write
	Header      http.Header                // every request header
}

// RecordingUpstream is a remote-write receiver for tests: a real HTTP server
// on 127.0.0.1 that records every request and answers as it is told.
//
// By default it answers like a Prometheus receiver: 415 to a Content-Type
// that is not remote-write, 400 to a body that is not a snappy-compressed
// request of its protocol, 400 to an RW 2.0 request with a series that has
// neither a sample nor a histogram (Prometheus 3 refuses it, and the sender
// drops the whole batch), else 204, for RW 2.0 with the Written headers
// counting every sample, histogram and exemplar of the request.
type RecordingUpstream struct {
	URL string // the write endpoint: <server>/api/v1/write

	srv  *httptest.Server
	mu   sync.Mutex
	cfg  upstreamConfig
	reqs []Request
	// head holds a PrometheusHead upstream's series, by labels' String;
	// conflicts, the duplicates with another value it refused.
	head      map[string]*headSeries
	conflicts []string
	// discarded counts the body bytes received in Discard mode.
	discarded atomic.Int64
}

// Discarded returns how many body bytes the upstream received in Discard
// mode.
func (u *RecordingUpstream) Discarded() int64 { return u.discarded.Load() }

type upstreamConfig struct {
	code       int
	msg        string
	retryAfter string
	delay      time.Duration
	rejectV2   bool
	noWritten  bool
	discard    bool
	head       bool // PrometheusHead (head.go)
}

// UpstreamOption changes how a RecordingUpstream answers.
type UpstreamOption func(*upstreamConfig)

// Answer makes the upstream answer code to every valid request; msg is the
// body of a non-2xx answer.
func Answer(code int, msg string) UpstreamOption {
	return func(c *upstreamConfig) { c.code, c.msg = code, msg }
}

// RetryAfter adds a Retry-After header to every answer.
func RetryAfter(v string) UpstreamOption {
	return func(c *upstreamConfig) { c.retryAfter = v }
}

// Delay makes the upstream wait d (or until the client gives up) before it
// answers. The request is recorded before the wait.
func Delay(d time.Duration) UpstreamOption {
	return func(c *upstreamConfig) { c.delay = d }
}

// RejectRW2 makes the upstream answer 415 to RW 2.0, as an RW 1.0-only
// receiver that checks the Content-Type does.
func RejectRW2() UpstreamOption {
	return func(c *upstreamConfig) { c.rejectV2 = true }
}

// OmitWritten makes the upstream answer RW 2.0 without the Written headers,
// as an RW 1.0-only receiver that ignores the Content-Type does.
func OmitWritten() UpstreamOption {
	return func(c *upstreamConfig) { c.noWritten = true }
}

// Discard makes the upstream keep and decode nothing: a sink for load
// tests. It then answers 204 to everything, and confirms RW 2.0 with
// Written headers that count nothing.
func Discard() UpstreamOption {
	return func(c *upstreamConfig) { c.discard = true }
}

// NewRecordingUpstream starts a RecordingUpstream, closed when the test ends.
func NewRecordingUpstream(t testing.TB, opts ...UpstreamOption) *RecordingUpstream {
	t.Helper()
	u := &RecordingUpstream{cfg: upstreamConfig{code: http.StatusNoContent}}
	u.Set(opts...)
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	u.URL = u.srv.URL + "/api/v1/write"
	t.Cleanup(u.srv.Close)
	return u
}

// Set changes how the upstream answers from now on.
func (u *RecordingUpstream) Set(opts ...UpstreamOption) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, o := range opts {
		o(&u.cfg)
	}
}

func (u *RecordingUpstream) serve(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	cfg := u.cfg
	u.mu.Unlock()
	if cfg.discard {
		n, _ := io.Copy(io.Discard, r.Body)
		u.discarded.Add(n)
		if p, _ := remoteapi.ParseProtoMsg(r.Header.Get("Content-Type")); p == ProtoV2 {
			setWritten(w.Header(), 0, 0, 0)
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	body, _ := io.ReadAll(r.Body)
	req := Request{Body: body, ContentType: r.Header.Get("Content-Type"), Header: r.Header.Clone()}
	req.Raw, _ = snappy.Decode(nil, body) // strictly snappy, as Prometheus decodes
	req.Proto, _ = remoteapi.ParseProtoMsg(req.ContentType)
	u.mu.Lock()
	u.reqs = append(u.reqs, req)
	// A head judges (and stores) before the delay: a write whose answer is
	// lost has happened all the same.
	var (
		headStored  int
		headRefusal error
	)
	judged := cfg.head && cfg.code/100 == 2 && req.Raw != nil && (req.Proto == ProtoV1 || (req.Proto == ProtoV2 && !cfg.rejectV2))
	if judged {
		headStored, headRefusal = u.appendHead(req.Proto, req.Raw)
	}
	u.mu.Unlock()

	if cfg.delay > 0 {
		select {
		case <-time.After(cfg.delay):
		case <-r.Context().Done():
		}
	}
	if cfg.retryAfter != "" {
		w.Header().Set("Retry-After", cfg.retryAfter)
	}
	var samples, histograms, exemplars int
	code, msg := cfg.code, cfg.msg
	switch {
	case req.Proto == "":
		code, msg = http.StatusUnsupportedMediaType, fmt.Sprintf("not a remote-write content type: %q", req.ContentType)
	case cfg.rejectV2 && req.Proto == ProtoV2:
		code, msg = http.StatusUnsupportedMediaType, "v2 not supported"
	case req.Raw == nil && len(body) > 0:
		code, msg = http.StatusBadRequest, "body is not snappy-compressed"
	default:
		var err error
		if samples, histograms, exemplars, err = count(req.Proto, req.Raw); err != nil {
			code, msg = http.StatusBadRequest, "decoding the request: "+err.Error()
		}
	}
	if code/100 == 2 && req.Proto == ProtoV2 {
		if err := emptySeries(req.Raw); err != nil {
			code, msg = http.StatusBadRequest, err.Error()
		}
	}
	if judged && code/100 == 2 && headRefusal != nil {
		// Prometheus answers 400 with what it wrote (RW 2.0: partial).
		if req.Proto == ProtoV2 {
			setWritten(w.Header(), headStored, histograms, 0)
		}
		code, msg = http.StatusBadRequest, headRefusal.Error()
	}
	if code/100 == 2 {
		if req.Proto == ProtoV2 && !cfg.noWritten {
			setWritten(w.Header(), samples, histograms, exemplars)
		}
		w.WriteHeader(code)
		return
	}
	http.Error(w, msg, code)
}

func setWritten(h http.Header, samples, histograms, exemplars int) {
	h.Set("X-Prometheus-Remote-Write-Samples-Written", strconv.Itoa(samples))
	h.Set("X-Prometheus-Remote-Write-Histograms-Written", strconv.Itoa(histograms))
	h.Set("X-Prometheus-Remote-Write-Exemplars-Written", strconv.Itoa(exemplars))
}

// emptySeries reports, as Prometheus 3's receiver does, an RW 2.0 series
// with neither a sample nor a histogram (exemplars or metadata alone).
func emptySeries(raw []byte) error {
	var req writev2.Request
	if err := req.Unmarshal(raw); err != nil {
		return err
	}
	for i, ts := range req.Timeseries {
		if len(ts.Samples) == 0 && len(ts.Histograms) == 0 {
			return fmt.Errorf("TimeSeries must contain at least one sample or histogram (series %d of the request)", i)
		}
	}
	return nil
}

// count decodes a decompressed request and counts what it carries.
func count(proto remoteapi.WriteMessageType, raw []byte) (samples, histograms, exemplars int, err error) {
	if proto == ProtoV2 {
		var req writev2.Request
		if err := req.Unmarshal(raw); err != nil {
			return 0, 0, 0, err
		}
		for _, ts := range req.Timeseries {
			samples, histograms, exemplars = samples+len(ts.Samples), histograms+len(ts.Histograms), exemplars+len(ts.Exemplars)
		}
		return samples, histograms, exemplars, nil
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil {
		return 0, 0, 0, err
	}
	for _, ts := range req.Timeseries {
		samples, histograms, exemplars = samples+len(ts.Samples), histograms+len(ts.Histograms), exemplars+len(ts.Exemplars)
	}
	return samples, histograms, exemplars, nil
}

// Requests returns what the upstream received so far, in order.
func (u *RecordingUpstream) Requests() []Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Request(nil), u.reqs...)
}

// Len returns how many requests the upstream received.
func (u *RecordingUpstream) Len() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// Bodies returns the bodies received so far, as received.
func (u *RecordingUpstream) Bodies() [][]byte {
	var out [][]byte
	for _, r := range u.Requests() {
		out = append(out, r.Body)
	}
	return out
}

// ContentTypes returns the Content-Type of every request received so far.
func (u *RecordingUpstream) ContentTypes() []string {
	var out []string
	for _, r := range u.Requests() {
		out = append(out, r.ContentType)
	}
	return out
}

// Headers returns the headers of every request received so far.
func (u *RecordingUpstream) Headers() []http.Header {
	var out []http.Header
	for _, r := range u.Requests() {
		out = append(out, r.Header)
	}
	return out
}
