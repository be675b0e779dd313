package main

// Memory under churn: waves of new LiteLLM keys (every first failure of a
// new key, user or model starts series) through the real rwfix with a small
// max_series. What rwfix keeps must stay within the budget docs/performance.md gives
// for max_series (about 1.1 KB per output), whatever the churn: the merge
// state is bounded by max_series, and so must be everything kept beside it
// (the decision cache).

import (
	"fmt"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
)

// simChurnRetained runs waves of keys, keys distinct label sets each, through
// a fresh rwfix with max_series maxSeries, and returns the heap it retains.
func simChurnRetained(t *testing.T, waves, keys, maxSeries int) (retained uint64, outputs float64) {
	t.Helper()
	sc := &simScenario{name: "churn", protocols: simRW1, minSets: 1, maxSets: 1, minRun: 1, maxRun: 1}
	w := newSimWorld(1, sc, t.TempDir())
	w.db = newSimTSDB(w)
	w.db.discard = true
	defer w.db.close()
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	f := &simFleet{w: w, rng: w.rngFaults, cfgPath: filepath.Join(w.dir, "rwfix.yml"), cfg: simConfig{maxSeries: maxSeries}}
	if err := f.writeConfig(f.cfg); err != nil {
		t.Fatal(err)
	}
	if err := f.start(f.procDir(), false); err != nil {
		t.Fatal(err)
	}
	defer f.close()
	const perRequest = 200
	for wave := range waves {
		for from := 0; from < keys; from += perRequest {
			w.clock.Add(100)
			req := &prompb.WriteRequest{}
			for k := from; k < min(from+perRequest, keys); k++ {
				for _, status := range []string{"None", "500", "200"} {
					ls := labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_total",
						"api_key_alias", fmt.Sprintf("key-%d-%d", wave, k), "end_user", "None",
						"hashed_api_key", fmt.Sprintf("%016x", uint64(wave*1_000_000+k)*0x9e3779b97f4a7c15),
						"instance", "litellm:4000", "job", "litellm", "requested_model", "gpt-4o",
						"status_code", status, "team", "team-churn", "user", fmt.Sprintf("user-%d", k%97))
					ts := prompb.TimeSeries{Samples: []prompb.Sample{{Timestamp: w.now(), Value: 1}}}
					ls.Range(func(l labels.Label) { ts.Labels = append(ts.Labels, prompb.Label{Name: l.Name, Value: l.Value}) })
					req.Timeseries = append(req.Timeseries, ts)
				}
			}
			raw, err := req.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if ans := f.call(snappy.Encode(nil, raw), nil); ans.code/100 != 2 {
				t.Fatalf("wave %d: rwfix answered %d: %s", wave, ans.code, ans.msg)
			}
		}
		w.clock.Add(60_000)
	}
	after := heap()
	outputs = simMetric(f.cur.reg, "rwfix_merge_state_series")
	runtime.KeepAlive(f)
	if after < before {
		return 0, outputs
	}
	return after - before, outputs
}

// TestSimulationChurnMemory: what rwfix retains does not grow with the keys
// that came and went once the merge state is full (max_series), and stays
// within max_series × 1.1 KB (docs/performance.md's figure) with room to spare (×1.5,
// plus 8 MiB for buffers and pools).
func TestSimulationChurnMemory(t *testing.T) {
	const maxSeries, keys = 2000, 3000 // one wave fills the state
	waves := 4
	one, _ := simChurnRetained(t, 1, keys, maxSeries)
	retained, outputs := simChurnRetained(t, waves, keys, maxSeries)
	budget := uint64(maxSeries*1100*3/2) + 8<<20
	growth := int64(retained) - int64(one)
	t.Logf("max_series %d: one wave of %d new keys (%d series): %.1f MiB retained; %d waves: %.1f MiB (%d outputs in the state); budget %.1f MiB",
		maxSeries, keys, keys*3, float64(one)/(1<<20), waves, float64(retained)/(1<<20), int(outputs), float64(budget)/(1<<20))
	if outputs > maxSeries {
		t.Errorf("%v outputs in the merge state, more than max_series %d", outputs, maxSeries)
	}
	if growth > int64(one)/10+1<<20 {
		t.Errorf("rwfix retains %.1f MiB more after %d waves of new keys than after one, with the merge state full all along: something beside it (the decision cache) grows with the keys that came and went",
			float64(growth)/(1<<20), waves)
	}
	if retained > budget {
		t.Errorf("rwfix retains %.1f MiB after the churn, more than the budget of %.1f MiB for max_series %d",
			float64(retained)/(1<<20), float64(budget)/(1<<20), maxSeries)
	}
}
