package offline

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/s2"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"go.yaml.in/yaml/v2"

	"github.com/rwfix/rwfix/remotewrite"
	"github.com/rwfix/rwfix/remotewrite/series"
	"github.com/rwfix/rwfix/remotewrite/wire"
)

// BuildFunc returns the repair pipeline for a configuration file ("" for
// the defaults), as the server would build it.
type BuildFunc func(configPath string) (series.Repairer, error)

// recorder is a remote-write upstream that keeps every body.
type recorder struct {
	mu     sync.Mutex
	bodies [][]byte
	protos []remoteapi.WriteMessageType
	srv    *http.Server
	url    string
}

func newRecorder() (*recorder, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &recorder{url: "http://" + l.Addr().String() + "/api/v1/write"}
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		proto, err := remoteapi.ParseProtoMsg(req.Header.Get("Content-Type"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnsupportedMediaType)
			return
		}
		r.mu.Lock()
		r.bodies = append(r.bodies, body)
		r.protos = append(r.protos, proto)
		r.mu.Unlock()
		w.Header().Set("X-Prometheus-Remote-Write-Samples-Written", "1")
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = r.srv.Serve(l) }()
	return r, nil
}

func (r *recorder) close() { _ = r.srv.Close() }

// take returns and forgets what the upstream received since the last call.
func (r *recorder) take() ([][]byte, []remoteapi.WriteMessageType) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, p := r.bodies, r.protos
	r.bodies, r.protos = nil, nil
	return b, p
}

// pipeline is a handler wired to a recording upstream.
type pipeline struct {
	h     *remotewrite.Handler
	rec   *recorder
	clock clocked // nil: the repairer has no merge clock
	now   time.Time
}

// clocked is a repairer whose merge state runs on a clock it is given:
// offline runs follow the samples' time, not the wall clock, so that a merged
// output waits for its sources as long as it would in production.
type clocked interface {
	SetMergeClock(now func() time.Time)
	MaxWait() time.Duration
}

// at sets the pipeline's clock to t (never backwards).
func (p *pipeline) at(t time.Time) {
	if t.After(p.now) {
		p.now = t
	}
}

// drain moves the clock past the longest wait and sends an empty request, so
// that every merged sample still held goes out.
func (p *pipeline) drain(proto remoteapi.WriteMessageType) ([][]byte, error) {
	if p.clock == nil {
		return nil, nil
	}
	p.at(p.now.Add(p.clock.MaxWait() + time.Second))
	var raw []byte
	if proto == remotewrite.ProtoV2 {
		var err error
		if raw, err = (&writev2.Request{Symbols: []string{""}}).Marshal(); err != nil {
			return nil, err
		}
	}
	code, msg, out, err := p.send(proto, s2.EncodeSnappy(nil, raw))
	if err == nil && code/100 != 2 {
		err = fmt.Errorf("rwfix answered %d: %s", code, msg)
	}
	return out, err
}

func newPipeline(rep series.Repairer, opts ...remotewrite.Option) (*pipeline, error) {
	rec, err := newRecorder()
	if err != nil {
		return nil, err
	}
	var uc remotewrite.UpstreamConfig
	if err := yaml.UnmarshalStrict([]byte("url: "+rec.url), &uc); err != nil {
		rec.close()
		return nil, err
	}
	u, err := remotewrite.NewUpstream(uc)
	if err != nil {
		rec.close()
		return nil, err
	}
	p := &pipeline{h: remotewrite.NewHandler(rep, []*remotewrite.Upstream{u}, opts...), rec: rec}
	if c, ok := rep.(clocked); ok {
		p.clock = c
		c.SetMergeClock(func() time.Time { return p.now })
	}
	return p, nil
}

// send posts one compressed body and returns what the upstream received.
func (p *pipeline) send(proto remoteapi.WriteMessageType, body []byte) (code int, msg string, out [][]byte, err error) {
	req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
	req.Header.Set("Content-Type", wire.ContentType(proto))
	req.Header.Set("Content-Encoding", "snappy")
	rec := httptest.NewRecorder()
	p.h.ServeHTTP(rec, req)
	bodies, _ := p.rec.take()
	for _, b := range bodies {
		raw, err := s2.Decode(nil, b)
		if err != nil {
			return 0, "", nil, err
		}
		out = append(out, raw)
	}
	return rec.Code, strings.TrimSpace(rec.Body.String()), out, nil
}
