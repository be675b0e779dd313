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
	"slices"
	"sync"
	"testing"

	"github.com/prometheus/prometheus/prompb"

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
				dst, _ = snappy.Decode(dst[:cap(dst)], c.bodies[i%len(c.bodies)])
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
		b.Run(c.name+"/scan+repair", func(b *testing.B) {
			c.load(b)
			p := litellmPipeline(b, benchRules)
			for i := 0; b.Loop(); i++ {
				p = c.wrap(b, i, p)
				s, _ := scan(c.proto, c.raws[i%len(c.raws)])
				_, mr := applyRepair(s, p, "")
				mr.done(true, allSamples(mr.retries()))
				s.release()
			}
			report(b, c.per)
		})
		b.Run(c.name+"/scan+repair+encode+compress", func(b *testing.B) {
			c.load(b)
			p := litellmPipeline(b, benchRules)
			var buf, cbuf []byte
			for i := 0; b.Loop(); i++ {
				p = c.wrap(b, i, p)
				s, _ := scan(c.proto, c.raws[i%len(c.raws)])
				_, mr := applyRepair(s, p, "")
				if s.changed() {
					buf = s.encode(buf[:0])
					cbuf = compress(cbuf, buf)
				}
				mr.done(true, allSamples(mr.retries()))
				s.release()
			}
			report(b, c.per)
		})
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

// TestNoPerSeriesAllocationForUntouchedSeries guards the fast path: a request
// of 2,000 series that no rule can touch costs a fixed handful of allocations
// (request bookkeeping), none per series.
func TestNoPerSeriesAllocationForUntouchedSeries(t *testing.T) {
	tpls := rwtest.Workload{Series: 2000, Untouched: true}.Templates(false)
	raw := tpls[0].Raw
	p := litellmPipeline(t, benchRules)
	lim := DefaultLimits()
	run := func() {
		s, err := scan(ProtoV1, raw)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.validate(&lim); err != nil {
			t.Fatal(err)
		}
		s.sortLabels()
		_, mr := applyRepair(s, p, "")
		mr.done(true, allSamples(mr.retries()))
		if s.changed() {
			t.Fatal("an untouched request was changed")
		}
		s.release()
	}
	run() // warm the pools
	// A handful per request; under -race sync.Pool drops items on purpose,
	// so the bound leaves room for that, and is still far below one per
	// series.
	if allocs := testing.AllocsPerRun(20, run); allocs > 50 {
		t.Errorf("%v allocations for 2000 untouched series, want a few per request (<= 50), none per series", allocs)
	}
}

// BenchmarkLabelOrder measures what labels out of order cost (vmagent sends
// job and instance after the scraped labels): the same untouched requests,
// sorted and with the first two labels moved last, through validate,
// sortLabels, the repair and the encoding of what changed.
func BenchmarkLabelOrder(b *testing.B) {
	bodies, samples := rwtest.Workload{Series: 2000, Untouched: true}.RW1()
	var sorted, unsorted [][]byte
	for _, body := range bodies {
		raw, err := snappy.Decode(nil, body)
		if err != nil {
			b.Fatal(err)
		}
		sorted = append(sorted, raw)
		var req prompb.WriteRequest
		if err := req.Unmarshal(raw); err != nil {
			b.Fatal(err)
		}
		for i := range req.Timeseries {
			ls := req.Timeseries[i].Labels
			moved := slices.Concat(ls[2:], ls[:2])
			req.Timeseries[i].Labels = moved
		}
		out, err := req.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		unsorted = append(unsorted, out)
	}
	perReq := samples / len(bodies)
	for _, tc := range []struct {
		name string
		raws [][]byte
	}{{"sorted", sorted}, {"unsorted", unsorted}} {
		b.Run(tc.name, func(b *testing.B) {
			p := litellmPipeline(b, benchRules)
			lim := DefaultLimits()
			var dst []byte
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				s, err := scan(ProtoV1, tc.raws[i%len(tc.raws)])
				if err != nil {
					b.Fatal(err)
				}
				if err := s.validate(&lim); err != nil {
					b.Fatal(err)
				}
				s.sortLabels()
				_, mr := applyRepair(s, p, "")
				mr.done(true, allSamples(mr.retries()))
				if s.changed() {
					dst = s.encode(dst[:0])
				}
				s.release()
			}
			report(b, perReq)
		})
	}
}

// BenchmarkCodecs compares the snappy block codecs on this workload's
// requests (RW 1.0, 2,000 samples, LiteLLM-like labels): decoding with
// golang/snappy and with s2 (which reads snappy blocks), encoding with
// golang/snappy, s2's snappy-compatible encoder (what rwfix uses) and its
// "better" level. It reports CPU-s per M samples and the compressed size.
func BenchmarkCodecs(b *testing.B) {
	bodies, samples := rwtest.Workload{Series: 20000, Mixed: true, NoneRatio: 0.2, GenuineMore: true, Rounds: 1}.RW1()
	per := samples / len(bodies)
	var raws [][]byte
	for _, body := range bodies {
		raw, err := snappy.Decode(nil, body)
		if err != nil {
			b.Fatal(err)
		}
		raws = append(raws, raw)
	}
	size := func(enc func(dst, src []byte) []byte) float64 {
		n := 0
		for _, raw := range raws {
			n += len(enc(nil, raw))
		}
		return float64(n) / float64(len(raws))
	}
	for _, c := range []struct {
		name string
		dec  func(dst, src []byte) ([]byte, error)
	}{{"decode/golang-snappy", snappy.Decode}, {"decode/s2", s2.Decode}} {
		b.Run(c.name, func(b *testing.B) {
			var dst []byte
			for i := 0; b.Loop(); i++ {
				var err error
				if dst, err = c.dec(dst[:cap(dst)], bodies[i%len(bodies)]); err != nil {
					b.Fatal(err)
				}
			}
			report(b, per)
		})
	}
	for _, c := range []struct {
		name string
		enc  func(dst, src []byte) []byte
	}{{"encode/golang-snappy", snappy.Encode}, {"encode/s2-snappy", s2.EncodeSnappy}, {"encode/s2-snappy-better", s2.EncodeSnappyBetter},
		{"encode/s2-snappy-chunked(rwfix)", compress}} {
		b.Run(c.name, func(b *testing.B) {
			var dst []byte
			for i := 0; b.Loop(); i++ {
				dst = c.enc(dst[:cap(dst)], raws[i%len(raws)])
			}
			report(b, per)
			b.ReportMetric(size(c.enc), "bytes/request")
		})
	}
}
