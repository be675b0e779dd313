package remotewrite

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/s2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/histogram"
)

func testutilCounter(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

func testHistogram() *histogram.Histogram {
	return &histogram.Histogram{
		Count: 5, ZeroCount: 1, Sum: 12.5, Schema: 1, ZeroThreshold: 0.001,
		PositiveSpans:   []histogram.Span{{Offset: 0, Length: 2}},
		PositiveBuckets: []int64{2, 0},
		NegativeSpans:   []histogram.Span{{Offset: 1, Length: 1}},
		NegativeBuckets: []int64{0},
	}
}

// TestCompressIsOneSnappyBlock: compress joins chunks encoded one by one into
// one snappy block; every snappy decoder (golang/snappy, as Prometheus
// decodes, and s2) must read back exactly the input, at and around the chunk
// boundaries, for compressible and random data.
func TestCompressIsOneSnappyBlock(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 100, compressChunk - 1, compressChunk, compressChunk + 1, 3*compressChunk + 17} {
		for _, kind := range []string{"repetitive", "random"} {
			raw := make([]byte, n)
			for i := range raw {
				if kind == "random" {
					raw[i] = byte(r.Uint32())
				} else {
					raw[i] = "litellm_proxy_total_requests_metric_total"[i%41] + byte(i/997%3)
				}
			}
			enc := compress(make([]byte, 0, 7), raw)
			for name, dec := range map[string]func([]byte, []byte) ([]byte, error){"golang/snappy": snappy.Decode, "s2": s2.Decode} {
				got, err := dec(nil, enc)
				if err != nil || !bytes.Equal(got, raw) {
					t.Fatalf("%s, %d bytes %s: decoded %d bytes, err %v", name, n, kind, len(got), err)
				}
			}
		}
	}
}
