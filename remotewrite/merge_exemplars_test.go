package remotewrite

import (
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/rwfix/rwfix/relabel"
	"github.com/rwfix/rwfix/remotewrite/rwtest"
)

// None and (with500) 500 of one user, each with an exemplar when
// withExemplars, and an unrelated series: an RW 2.0 request of one scrape at
// ts.
func collidingRW2(ts int64, withExemplars, with500 bool) *writev2.Request {
	st := writev2.NewSymbolTable()
	ex := st.SymbolizeLabels(labels.FromStrings("trace_id", "t1"), nil)
	series := func(ls labels.Labels, v float64) writev2.TimeSeries {
		s := writev2.TimeSeries{LabelsRefs: st.SymbolizeLabels(ls, nil), Samples: []writev2.Sample{{Value: v, Timestamp: ts}}}
		if withExemplars {
			s.Exemplars = []writev2.Exemplar{{LabelsRefs: ex, Value: 1, Timestamp: ts}}
		}
		return s
	}
	tss := []writev2.TimeSeries{series(noneTotal, 2)}
	if with500 {
		tss = append(tss, series(fixedTotal, 3))
	}
	tss = append(tss, writev2.TimeSeries{LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "up"), nil), Samples: []writev2.Sample{{Value: 1, Timestamp: ts}}})
	return &writev2.Request{Symbols: st.Symbols(), Timeseries: tss}
}

// RW 2.0: while a merged output holds its samples (here: a None series
// whose 500 may still be born on another shard), its sources' exemplars must not go out alone in a
// series without samples — Prometheus 3 answers 400 and the sender drops the
// batch, the unrelated series with it. They are dropped and counted; once
// the output sends, the request goes through with the exact sum.
func TestRW2HeldMergeSendsNoExemplarOnlySeries(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t)
	reg := prometheus.NewRegistry()
	cfg := relabel.DefaultConfig()
	p, err := relabel.New(cfg, relabel.NewMetrics(reg), relabel.NewMerger(cfg.Collision, reg))
	if err != nil {
		t.Fatal(err)
	}
	p.Activate(false)
	clock := rwtest.NewClock(time.Unix(1000, 0))
	p.SetMergeClock(clock.Now)
	h := NewHandler(p, []*Upstream{upstreamFor(t, up.URL, time.Second)})

	if rec := post(t, h, ctV2, encodeV2(t, collidingRW2(10_000, true, false))); rec.Code != http.StatusNoContent {
		t.Fatalf("request with a held merged output: status %d: %s", rec.Code, rec.Body)
	}
	for i, body := range up.Bodies() {
		for _, ts := range decodeV2(t, body).Timeseries {
			if len(ts.Samples) == 0 && len(ts.Histograms) == 0 {
				t.Fatalf("request %d to the upstream has a series without sample or histogram: %+v", i, ts)
			}
		}
	}
	if got := rwtest.CounterValue(t, reg, "rwfix_merge_dropped_exemplars_total"); got != 1 {
		t.Errorf("rwfix_merge_dropped_exemplars_total = %v, want 1", got)
	}
	// Past the birth wait: the next scrape sends the held sample (the None
	// alone: the 500 was born later) and its own, the sum.
	clock.Add(3 * time.Minute)
	if rec := post(t, h, ctV2, encodeV2(t, collidingRW2(25_000, false, true))); rec.Code != http.StatusNoContent {
		t.Fatalf("second request: status %d: %s", rec.Code, rec.Body)
	}
	bodies := up.Bodies()
	var merged []writev2.Sample
	var sb labels.ScratchBuilder
	for _, body := range bodies {
		out := decodeV2(t, body)
		for _, ts := range out.Timeseries {
			if ls, _ := ts.ToLabels(&sb, out.Symbols); labels.Equal(ls, fixedTotal) {
				merged = append(merged, ts.Samples...)
			}
		}
	}
	if len(merged) != 2 || merged[0].Value != 2 || merged[1].Value != 5 {
		t.Fatalf("merged samples %+v, want 2 at 10000 and 5 at 25000", merged)
	}
}
