package rwtest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/s2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"google.golang.org/protobuf/encoding/protowire"
)

// Workload describes the traffic.
type Workload struct {
	Series    int // distinct series (default 20000)
	BatchSize int // series (= samples) per request (default 2000)
	Rounds    int // scrapes: each round sends every series once, with a later timestamp (default 10)
	// NoneRatio is the share of series given a "None" code, before
	// GenuineMore's twins are added. Mixed: the share of the two counters'
	// series (the histogram and the gauge get none), so with GenuineMore a
	// ratio r makes r/(1+r) of each counter's series "None".
	NoneRatio   float64
	GenuineMore bool // give every "None" series a genuine "500" twin, so every repair collides
	// Scattered: the "None" series fall at pseudo-random places (a fixed
	// seed: the same every run) instead of every 1/NoneRatio-th series, so
	// that, when they are few, requests carry none, one or a few of them.
	Scattered bool
	// Untouched: no series that any rule or merge can touch (no "None", no
	// "500"): what every relay should forward at the cost of bytes.
	Untouched bool
	// Mixed: a LiteLLM exporter's mix instead of one metric: a quarter each
	// of the request counter (status_code), the failed-request counter
	// (exception_status), a latency histogram's buckets (le) and a gauge.
	// The None and 500 values land on the two counters.
	Mixed bool
	// Created: every counter series (a _total name) comes with its
	// _created twin, right after it, as prometheus_client (LiteLLM's)
	// exposes a counter; its value is a creation time, the same every
	// round. The twins count in Series.
	Created bool
}

// CreatedAt is the creation time (Unix seconds) that a workload's
// _created series say.
const CreatedAt = 1_699_999_000

func (w Workload) withDefaults() Workload {
	if w.Series == 0 {
		w.Series = 20000
	}
	if w.BatchSize == 0 {
		w.BatchSize = 2000
	}
	if w.Rounds == 0 {
		w.Rounds = 10
	}
	return w
}

// SeriesLabels returns the label sets of the workload, in send order.
func (w Workload) SeriesLabels() []labels.Labels {
	w = w.withDefaults()
	out := make([]labels.Labels, 0, w.Series)
	models := []string{"gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "claude-3-haiku", "llama-3.1-70b"}
	codes := []string{"200", "200", "200", "200", "200", "200", "429", "500"}
	nNone := int(float64(w.Series) * w.NoneRatio)
	for i := 0; len(out) < w.Series; i++ {
		user := fmt.Sprintf("u%05d", i)
		key := sha256.Sum256([]byte(user))
		code := codes[i%len(codes)]
		if w.Untouched && code == "500" {
			code = "503"
		}
		none := nNone > 0 && i%(w.Series/nNone) == 0
		if w.Scattered {
			none = float64(mix64(uint64(i))>>11)/(1<<53) < w.NoneRatio
		}
		if none {
			code = "None"
		}
		b := labels.NewScratchBuilder(16)
		name, codeLabel := "litellm_proxy_total_requests_metric_total", "status_code"
		if w.Mixed {
			switch (i / len(codes)) % 4 {
			case 1:
				name, codeLabel = "litellm_proxy_failed_requests_metric_total", "exception_status"
			case 2:
				name, codeLabel = "litellm_request_total_latency_metric_bucket", "le"
				code = []string{"0.1", "0.5", "1.0", "5.0", "+Inf"}[i%5]
			case 3:
				name, codeLabel = "litellm_remaining_api_key_requests_for_model", "status_code"
				code = "200"
			}
			none = none && codeLabel != "le" && code != "200"
			if none {
				code = "None"
			}
		}
		b.Add("__name__", name)
		b.Add("api_key_alias", user)
		b.Add("api_provider", "openai")
		b.Add("end_user", "None")
		b.Add("hashed_api_key", hex.EncodeToString(key[:]))
		b.Add("instance", "10.0.3.17:4000")
		b.Add("job", "litellm")
		b.Add("litellm_model_name", models[i%len(models)])
		b.Add("model_id", hex.EncodeToString(key[8:12]))
		b.Add("requested_model", models[i%len(models)])
		b.Add(codeLabel, code)
		b.Add("team", fmt.Sprintf("team-%03d", i%97))
		b.Add("team_alias", fmt.Sprintf("t%03d", i%97))
		b.Add("user", user)
		b.Add("user_email", user+"@x.io")
		b.Sort()
		ls := b.Labels()
		out = w.appendSeries(out, ls)
		if none && w.GenuineMore && len(out) < w.Series {
			b.Reset()
			ls.Range(func(l labels.Label) {
				if l.Name == codeLabel {
					l.Value = "500"
				}
				b.Add(l.Name, l.Value)
			})
			out = w.appendSeries(out, b.Labels())
		}
	}
	return out
}

// appendSeries appends ls and, with Created, its _created twin if it is a
// counter, within Series.
func (w Workload) appendSeries(out []labels.Labels, ls labels.Labels) []labels.Labels {
	if len(out) >= w.Series {
		return out
	}
	out = append(out, ls)
	name := ls.Get(model.MetricNameLabel)
	if base, ok := strings.CutSuffix(name, "_total"); ok && w.Created && len(out) < w.Series {
		b := labels.NewBuilder(ls)
		b.Set(model.MetricNameLabel, base+"_created")
		out = append(out, b.Labels())
	}
	return out
}

// IsCreated reports whether ls is a _created series (its value a creation
// time).
func IsCreated(ls labels.Labels) bool {
	return strings.HasSuffix(ls.Get(model.MetricNameLabel), "_created")
}

// value is series i's sample value in round r.
func value(ls labels.Labels, r, i int) float64 {
	if IsCreated(ls) {
		return CreatedAt + float64(i%7)
	}
	return float64(r*10 + i%7)
}

// mix64 is splitmix64's finalizer: a fixed pseudo-random value per series.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// RW1 returns the workload as snappy-compressed RW 1.0 requests, round after
// round, and the number of samples in all of them.
func (w Workload) RW1() (bodies [][]byte, samples int) {
	w = w.withDefaults()
	series := w.SeriesLabels()
	for r := range w.Rounds {
		ts := 1_700_000_000_000 + int64(r)*15_000
		for off := 0; off < len(series); off += w.BatchSize {
			req := &prompb.WriteRequest{}
			for i, ls := range series[off:min(off+w.BatchSize, len(series))] {
				req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
					Labels:  prompb.FromLabels(ls, nil),
					Samples: []prompb.Sample{{Value: value(ls, r, off+i), Timestamp: ts}},
				})
				samples++
			}
			raw, err := req.Marshal()
			if err != nil {
				panic(err)
			}
			bodies = append(bodies, s2.EncodeSnappy(nil, raw))
		}
	}
	return bodies, samples
}

// RW2 is RW1 in remote write 2.0, with metadata as Prometheus 3 sends it.
func (w Workload) RW2() (bodies [][]byte, samples int) {
	w = w.withDefaults()
	series := w.SeriesLabels()
	for r := range w.Rounds {
		ts := 1_700_000_000_000 + int64(r)*15_000
		for off := 0; off < len(series); off += w.BatchSize {
			st := writev2.NewSymbolTable()
			req := &writev2.Request{}
			help := st.Symbolize("Total number of requests made to the proxy server - track number of client side requests")
			for i, ls := range series[off:min(off+w.BatchSize, len(series))] {
				req.Timeseries = append(req.Timeseries, writev2.TimeSeries{
					LabelsRefs: st.SymbolizeLabels(ls, nil),
					Samples:    []writev2.Sample{{Value: value(ls, r, off+i), Timestamp: ts}},
					Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, HelpRef: help},
				})
				samples++
			}
			req.Symbols = st.Symbols()
			raw, err := req.Marshal()
			if err != nil {
				panic(err)
			}
			bodies = append(bodies, s2.EncodeSnappy(nil, raw))
		}
	}
	return bodies, samples
}

// Template is one uncompressed request whose sample timestamps can be
// rewritten in place, so that a load generator can send the same series with
// ever newer timestamps (as a Prometheus does, scrape after scrape) without
// re-encoding them.
type Template struct {
	Raw     []byte
	Samples int
	tsOffs  []int // offsets of the 6-byte timestamp varints
}

// Templates returns the workload's first round as templates.
func (w Workload) Templates(rw2 bool) []Template {
	w = w.withDefaults()
	w.Rounds = 1
	var bodies [][]byte
	if rw2 {
		bodies, _ = w.RW2()
	} else {
		bodies, _ = w.RW1()
	}
	seriesField := protowire.Number(1)
	if rw2 {
		seriesField = 5
	}
	out := make([]Template, 0, len(bodies))
	for _, body := range bodies {
		raw, err := s2.Decode(nil, body)
		if err != nil {
			panic(err)
		}
		t := Template{Raw: raw}
		eachField(raw, 0, len(raw), func(num protowire.Number, start, end int) {
			if num != seriesField {
				return
			}
			eachField(raw, start, end, func(num protowire.Number, start, end int) {
				if num != 2 { // samples
					return
				}
				t.Samples++
				eachField(raw, start, end, func(num protowire.Number, start, end int) {
					if num == 2 { // timestamp
						if end-start != 6 {
							panic("timestamp varint is not 6 bytes")
						}
						t.tsOffs = append(t.tsOffs, start)
					}
				})
			})
		})
		out = append(out, t)
	}
	return out
}

// eachField calls f with the value bounds of every field of raw[start:end]
// (for LEN fields, the content).
func eachField(raw []byte, start, end int, f func(num protowire.Number, start, end int)) {
	for off := start; off < end; {
		num, typ, n := protowire.ConsumeTag(raw[off:end])
		if n < 0 {
			panic("bad protobuf")
		}
		off += n
		if typ == protowire.BytesType {
			l, m := protowire.ConsumeVarint(raw[off:end])
			if m < 0 || int(l) > end-off-m {
				panic("bad protobuf")
			}
			f(num, off+m, off+m+int(l))
			off += m + int(l)
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, raw[off:end])
		if m < 0 {
			panic("bad protobuf")
		}
		f(num, off, off+m)
		off += m
	}
}

// Render writes the template with every sample at timestamp ts (milliseconds,
// between 2^35 and 2^42) into dst, snappy-compressed as Prometheus compresses
// (golang/snappy: each 64 KiB of input on its own), and returns it.
func (t Template) Render(scratch, dst []byte, ts int64) (raw, compressed []byte) {
	raw = scratch[:0]
	raw = append(raw, t.Raw...)
	var v [10]byte
	enc := protowire.AppendVarint(v[:0], uint64(ts))
	if len(enc) != 6 {
		panic("timestamp out of the 6-byte varint range")
	}
	for _, off := range t.tsOffs {
		copy(raw[off:off+6], enc)
	}
	return raw, snappy.Encode(dst[:cap(dst)], raw)
}
