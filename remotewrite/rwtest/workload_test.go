package rwtest

import (
	"strings"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/protobuf/encoding/protowire"
)

func TestWorkloadShape(t *testing.T) {
	w := Workload{NoneRatio: 0.1}
	series := w.SeriesLabels()
	none := 0
	for _, ls := range series {
		if ls.Get("status_code") == "None" {
			none++
		}
		if ls.Len() != 15 || len(ls.Get("hashed_api_key")) != 64 {
			t.Fatalf("series %s: want 15 labels and a 64-hex hashed_api_key", ls)
		}
	}
	if len(series) != 20000 || none < 1900 || none > 2100 {
		t.Errorf("%d series, %d None: want 20000 and ~10%%", len(series), none)
	}
	bodies, samples := Workload{Rounds: 1}.RW1()
	raw, comp := 0, 0
	for _, b := range bodies {
		d, err := snappy.Decode(nil, b)
		if err != nil {
			t.Fatal(err)
		}
		raw += len(d)
		comp += len(b)
	}
	t.Logf("RW1: %d bytes raw, %d snappy per sample; %d None series", raw/samples, comp/samples, none)
	if raw/samples < 300 || raw/samples > 500 || !strings.Contains(series[0].String(), "litellm_proxy_total_requests_metric_total") {
		t.Errorf("%d raw bytes per sample, want ~390", raw/samples)
	}
}

// TestWorkloadScattered checks the sparse workload: about 0.5% of each
// counter's series None, each with its 500 twin, at places that differ from
// request to request, and the same every time.
func TestWorkloadScattered(t *testing.T) {
	w := Workload{Series: 50000, Mixed: true, NoneRatio: 0.005, GenuineMore: true, Scattered: true}
	series := w.SeriesLabels()
	counters, none, twins := 0, 0, 0
	perReq := map[int]int{}
	for i, ls := range series {
		code := ls.Get("status_code") + ls.Get("exception_status")
		if name := ls.Get("__name__"); name == "litellm_proxy_total_requests_metric_total" || name == "litellm_proxy_failed_requests_metric_total" {
			counters++
		}
		if code == "None" {
			none++
			perReq[i/2000]++
			if i+1 < len(series) {
				next := series[i+1]
				if next.Get("status_code")+next.Get("exception_status") == "500" && next.Get("user") == ls.Get("user") {
					twins++
				}
			}
		}
	}
	if share := float64(none) / float64(counters); share < 0.003 || share > 0.007 {
		t.Errorf("%d None in %d counter series (%.2f%%), want about 0.5%%", none, counters, 100*share)
	}
	if twins != none {
		t.Errorf("%d of %d None series have a 500 twin, want all", twins, none)
	}
	distinct := map[int]bool{}
	for _, n := range perReq {
		distinct[n] = true
	}
	if len(distinct) < 3 {
		t.Errorf("None per request %v: want them scattered, not evenly spaced", perReq)
	}
	again := w.SeriesLabels()
	for i := range series {
		if series[i].String() != again[i].String() {
			t.Fatalf("series %d differs between two calls: %s, %s", i, series[i], again[i])
		}
	}
}

func TestTemplateRender(t *testing.T) {
	for _, rw2 := range []bool{false, true} {
		tpls := Workload{Series: 100, BatchSize: 50}.Templates(rw2)
		if len(tpls) != 2 || tpls[0].Samples != 50 {
			t.Fatalf("rw2=%v: %d templates, %d samples", rw2, len(tpls), tpls[0].Samples)
		}
		raw, comp := tpls[1].Render(nil, nil, 1_800_000_000_123)
		d, err := snappy.Decode(nil, comp)
		if err != nil || string(d) != string(raw) {
			t.Fatal("compressed render does not decode to the raw render")
		}
		n := 0
		seriesField := protowire.Number(1)
		if rw2 {
			seriesField = 5
		}
		eachField(raw, 0, len(raw), func(num protowire.Number, s, e int) {
			if num != seriesField {
				return
			}
			eachField(raw, s, e, func(num protowire.Number, s, e int) {
				if num == 2 {
					eachField(raw, s, e, func(num protowire.Number, s, e int) {
						if num == 2 {
							if v, _ := protowire.ConsumeVarint(raw[s:e]); v == 1_800_000_000_123 {
								n++
							}
						}
					})
				}
			})
		})
		if n != 50 {
			t.Errorf("rw2=%v: %d samples carry the new timestamp, want 50", rw2, n)
		}
	}
}

// TestWorkloadCreated: with Created, every counter series is followed by
// its _created twin (the same labels but the name), the twins count in
// Series, and a twin's value is a creation time, the same every round.
func TestWorkloadCreated(t *testing.T) {
	w := Workload{Series: 4000, Mixed: true, NoneRatio: 0.2, GenuineMore: true, Created: true, Rounds: 2}
	series := w.SeriesLabels()
	if len(series) != w.Series {
		t.Fatalf("%d series, want %d", len(series), w.Series)
	}
	twins, counters := 0, 0
	for i, ls := range series {
		name := ls.Get("__name__")
		if base, ok := strings.CutSuffix(name, "_total"); ok {
			counters++
			if i+1 == len(series) {
				continue // the last: its twin did not fit
			}
			b := labels.NewBuilder(ls)
			b.Set("__name__", base+"_created")
			if !labels.Equal(series[i+1], b.Labels()) {
				t.Fatalf("series %d %s is followed by %s, not its _created twin", i, ls, series[i+1])
			}
		}
		if IsCreated(ls) {
			twins++
		}
	}
	if twins == 0 || twins < counters-1 {
		t.Fatalf("%d _created twins of %d counters", twins, counters)
	}
	bodies, _ := w.RW1()
	values := map[string]float64{}
	for _, body := range bodies {
		raw, err := snappy.Decode(nil, body)
		if err != nil {
			t.Fatal(err)
		}
		var req prompb.WriteRequest
		if err := req.Unmarshal(raw); err != nil {
			t.Fatal(err)
		}
		for _, ts := range req.Timeseries {
			ls := ts.ToLabels(&labels.ScratchBuilder{}, nil)
			v := ts.Samples[0].Value
			if !IsCreated(ls) {
				continue
			}
			if v < CreatedAt || v > CreatedAt+7 {
				t.Fatalf("%s: value %v, not a creation time", ls, v)
			}
			if old, ok := values[ls.String()]; ok && old != v {
				t.Fatalf("%s: creation time %v, then %v", ls, old, v)
			}
			values[ls.String()] = v
		}
	}
	if len(values) != twins {
		t.Fatalf("%d _created series sent, want %d", len(values), twins)
	}
}
