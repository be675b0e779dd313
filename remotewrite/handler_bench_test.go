package remotewrite

// Benchmarks per stage and for the whole handler, on the LiteLLM-like
// workloads of package rwtest. Run:
//
//	go test -run '^$' -bench . -benchmem ./remotewrite
//
// Each reports ns/sample and CPU-s/Msample (single-threaded, so wall time is
// CPU time) besides Go's own ns/op, B/op and allocs/op (per request).

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/s2"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"

	"github.com/rwfix/rwfix/relabel"
	"github.com/rwfix/rwfix/remotewrite/rwtest"
)

type benchCase struct {
	name   string
	proto  remoteapi.WriteMessageType
	w      rwtest.Workload
	once   sync.Once
	bodies [][]byte
	raws   [][]byte
	per    int // samples per request
}

// load generates the workload on first use, so that running one benchmark
// does not pay (or profile) the generation of all of them.
func (c *benchCase) load(b *testing.B) {
	c.once.Do(func() {
		var n int
		if c.proto == ProtoV1 {
			c.bodies, n = c.w.RW1()
		} else {
			c.bodies, n = c.w.RW2()
		}
		c.per = n / len(c.bodies)
		for _, body := range c.bodies {
			raw, err := snappy.Decode(nil, body)
			if err != nil {
				b.Fatal(err)
			}
			c.raws = append(c.raws, raw)
		}
	})
}

var benchCasesList = func() []*benchCase {
	var cases []*benchCase
	for _, batch := range []int{500, 2000} {
		for _, wl := range []struct {
			name string
			w    rwtest.Workload
		}{
			{"untouched", rwtest.Workload{BatchSize: batch, Rounds: benchRounds, Untouched: true}},
			{"clean", rwtest.Workload{BatchSize: batch, Rounds: benchRounds}},
			{"repair", rwtest.Workload{BatchSize: batch, Rounds: benchRounds, NoneRatio: 0.1}},
			// As the load benchmark's repair-heavy row: every None with its
			// genuine 500 twin, summed by the merge.
			{"repair-heavy", rwtest.Workload{BatchSize: batch, Rounds: benchRounds, Mixed: true, NoneRatio: 0.2, GenuineMore: true}},
		} {
			for _, proto := range []remoteapi.WriteMessageType{ProtoV1, ProtoV2} {
				cases = append(cases, &benchCase{name: fmt.Sprintf("%s/%s/batch=%d", protoLabel(string(proto)), wl.name, batch), proto: proto, w: wl.w})
			}
		}
	}
	return cases
}()

// benchRounds: the requests of this many scrapes are cycled through; when
// they wrap around, the benchmark starts a fresh pipeline (timer stopped), so
// that the merge state always sees newer timestamps, as in production.
const benchRounds = 5

func benchCases(*testing.B) []*benchCase { return benchCasesList }

func report(b *testing.B, samplesPerOp int) {
	ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N*samplesPerOp)
	b.ReportMetric(ns, "ns/sample")
	b.ReportMetric(ns/1000, "CPU-s/Msample")
	b.ReportMetric(1e9/ns, "samples/s")
}

const benchRules = "collision: {policy: merge}"

func BenchmarkStages(b *testing.B) {
	for _, c := range benchCases(b) {
		b.Run(c.name+"/decompress", func(b *testing.B) {
			c.load(b)
			var dst []byte
			for i := 0; b.Loop(); i++ {
				dst, _ = s2.Decode(dst[:cap(dst)], c.bodies[i%len(c.bodies)]) // as the handler decodes
			}
			report(b, c.per)
		})
		b.Run(c.name+"/scan", func(b *testing.B) {
			c.load(b)
			for i := 0; b.Loop(); i++ {
				s, err := scan(c.proto, c.raws[i%len(c.raws)])
				if err != nil {
					b.Fatal(err)
				}
				s.release()
			}
			report(b, c.per)
		})
		b.Run(c.name+"/scan+validate", func(b *testing.B) {
			c.load(b)
			lim := DefaultLimits()
			for i := 0; b.Loop(); i++ {
				s, err := scan(c.proto, c.raws[i%len(c.raws)])
				if err != nil {
					b.Fatal(err)
				}
				if err := s.validate(&lim); err != nil {
					b.Fatal(err)
				}
				s.release()
			}
			report(b, c.per)
		})
		for _, encode := range []bool{false, true} {
			name := c.name + "/scan+repair"
			if encode {
				name += "+encode+compress"
			}
			b.Run(name, func(b *testing.B) {
				c.load(b)
				p := litellmPipeline(b, benchRules)
				var buf, cbuf []byte
				for i := 0; b.Loop(); i++ {
					p = c.wrap(b, i, p)
					s, _ := scan(c.proto, c.raws[i%len(c.raws)])
					_, mr := applyRepair(s, p, "")
					if encode && s.changed() {
						buf = s.encode(buf[:0])
						cbuf = compress(cbuf, buf)
					}
					mr.done(true, allSamples(mr.retries()))
					s.release()
				}
				report(b, c.per)
			})
		}
		b.Run(c.name+"/reference-gogo", func(b *testing.B) {
			c.load(b)
			p := litellmPipeline(b, benchRules)
			for i := 0; b.Loop(); i++ {
				p = c.wrap(b, i, p)
				bt, err := decode(c.proto, c.raws[i%len(c.raws)])
				if err != nil {
					b.Fatal(err)
				}
				res, mr := bt.repair(p, "")
				if res.Changed {
					raw, _ := bt.marshal()
					_ = compress(nil, raw)
				}
				mr.done(true, allSamples(mr.retries()))
			}
			report(b, c.per)
		})
	}
}

// discard answers every upstream request 204 without a network.
type discard struct{}

func (discard) RoundTrip(r *http.Request) (*http.Response, error) {
	_, _ = io.Copy(io.Discard, r.Body)
	_ = r.Body.Close()
	h := http.Header{}
	h.Set("X-Prometheus-Remote-Write-Samples-Written", "1")
	return &http.Response{StatusCode: http.StatusNoContent, Body: http.NoBody, Header: h, Request: r}, nil
}

// BenchmarkHandler is the whole request: read, decompress, scan, repair,
// encode, compress, forward (to an in-memory upstream), answer.
func BenchmarkHandler(b *testing.B) {
	for _, c := range benchCases(b) {
		b.Run(c.name, func(b *testing.B) {
			c.load(b)
			u := upstreamFor(b, "http://127.0.0.1:1/api/v1/write", 0)
			u.client = &http.Client{Transport: discard{}}
			p := litellmPipeline(b, benchRules)
			h := NewHandler(p, []*Upstream{u})
			ct := "application/x-protobuf"
			if c.proto == ProtoV2 {
				ct = ctV2
			}
			for i := 0; b.Loop(); i++ {
				if np := c.wrap(b, i, p); np != p {
					p = np
					h.Update(p, []*Upstream{u})
				}
				req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(c.bodies[i%len(c.bodies)]))
				req.Header.Set("Content-Type", ct)
				req.Header.Set("Content-Encoding", "snappy")
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusNoContent {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
			report(b, c.per)
		})
	}
}

// wrap returns a fresh pipeline when request i starts the cycle again.
func (c *benchCase) wrap(b *testing.B, i int, p *relabel.Pipeline) *relabel.Pipeline {
	if i == 0 || i%len(c.raws) != 0 {
		return p
	}
	b.StopTimer()
	defer b.StartTimer()
	return litellmPipeline(b, benchRules)
}
