package rwtest

import (
	"strings"
	"testing"

	"github.com/golang/snappy"
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
