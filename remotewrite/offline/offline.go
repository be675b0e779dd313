package offline

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/s2"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"go.yaml.in/yaml/v2"

	"github.com/rwfix/rwfix/remotewrite"
)

// BuildFunc returns the repair pipeline for a configuration file ("" for
// the defaults), as the server would build it.
type BuildFunc func(configPath string) (remotewrite.Repairer, error)

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

func newPipeline(rep remotewrite.Repairer, opts ...remotewrite.Option) (*pipeline, error) {
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
	ct := "application/x-protobuf"
	if proto == remotewrite.ProtoV2 {
		ct += ";proto=" + string(remotewrite.ProtoV2)
	}
	req.Header.Set("Content-Type", ct)
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

// Series is one series of a decoded request, with its float samples.
type Series struct {
	Labels  labels.Labels
	Samples []prompb.Sample
	Other   string // histograms, exemplars, metadata, rendered
}

// Decode returns the series of a decompressed request, in request order.
func Decode(proto remoteapi.WriteMessageType, raw []byte) ([]Series, error) {
	var out []Series
	var sb labels.ScratchBuilder
	switch proto {
	case remotewrite.ProtoV1:
		var req prompb.WriteRequest
		if err := req.Unmarshal(raw); err != nil {
			return nil, err
		}
		for _, ts := range req.Timeseries {
			s := Series{Labels: ts.ToLabels(&sb, nil), Samples: ts.Samples}
			var o strings.Builder
			for _, h := range ts.Histograms {
				fmt.Fprintf(&o, " h=%d:%s", h.Timestamp, h.ToFloatHistogram().String())
			}
			for _, e := range ts.Exemplars {
				fmt.Fprintf(&o, " ex=%d:%s:%v", e.Timestamp, FormatValue(e.Value), e.Labels)
			}
			s.Other = o.String()
			out = append(out, s)
		}
		for _, m := range req.Metadata {
			out = append(out, Series{Other: fmt.Sprintf("# metadata %s %s unit=%q help=%q", m.MetricFamilyName, m.Type, m.Unit, m.Help)})
		}
	case remotewrite.ProtoV2:
		var req writev2.Request
		if err := req.Unmarshal(raw); err != nil {
			return nil, err
		}
		for _, ts := range req.Timeseries {
			ls, err := ts.ToLabels(&sb, req.Symbols)
			if err != nil {
				return nil, err
			}
			s := Series{Labels: ls}
			var o strings.Builder
			for _, smp := range ts.Samples {
				s.Samples = append(s.Samples, prompb.Sample{Value: smp.Value, Timestamp: smp.Timestamp})
				if smp.StartTimestamp != 0 {
					fmt.Fprintf(&o, " st@%d=%d", smp.Timestamp, smp.StartTimestamp)
				}
			}
			for _, h := range ts.Histograms {
				fmt.Fprintf(&o, " h=%d:%s", h.Timestamp, h.ToFloatHistogram().String())
			}
			for _, e := range ts.Exemplars {
				ex, err := e.ToExemplar(&sb, req.Symbols)
				if err != nil {
					return nil, err
				}
				fmt.Fprintf(&o, " ex=%d:%s:%v", ex.Ts, FormatValue(ex.Value), ex.Labels)
			}
			md, err := ts.ToMetadata(req.Symbols)
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(&o, " meta=%s unit=%q help=%q", md.Type, md.Unit, md.Help)
			s.Other = o.String()
			out = append(out, s)
		}
	default:
		return nil, fmt.Errorf("unknown protocol %q", proto)
	}
	return out, nil
}

// Render prints a decompressed request: one line per series in request
// order, every sample's timestamp and exact value.
func Render(proto remoteapi.WriteMessageType, raw []byte) (string, error) {
	series, err := Decode(proto, raw)
	if err != nil {
		return "", err
	}
	return renderSeries(series), nil
}

// FormatValue prints a sample value; NaNs with their bits, since a stale
// marker is one exact NaN.
func FormatValue(v float64) string {
	if math.IsNaN(v) {
		return fmt.Sprintf("NaN(%#x)", math.Float64bits(v))
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
