package remotewrite

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/s2"

	"github.com/rwfix/rwfix/remotewrite/rwtest"
)

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
