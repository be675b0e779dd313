package remotewrite

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"

	"github.com/rwfix/rwfix/relabel"
	"github.com/rwfix/rwfix/remotewrite/rwtest"
)

// oneSeries is an RW 1.0 request of one series' samples (one shard's).
func oneSeries(t *testing.T, ls labels.Labels, samples ...prompb.Sample) []byte {
	t.Helper()
	return encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{v1Series(ls, samples...)}})
}

// A reload that turns the preset off while a merged sample is held: the 500
// that goes out raw afterwards must never meet the merge's own sample at one
// timestamp with another value (Prometheus refuses the sender's batch, 400),
// and the held sample is not lost.
func TestReloadPresetOffWhileHeld(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t, rwtest.PrometheusHead())
	ups := []*Upstream{upstreamFor(t, up.URL, 5*time.Second)}
	merger := relabel.NewMerger(relabel.DefaultCollisionConfig(), nil)
	clock := rwtest.NewClock(time.Unix(1000, 0))
	merger.SetClock(clock.Now)
	on, err := relabel.New(relabel.DefaultConfig(), nil, merger)
	if err != nil {
		t.Fatal(err)
	}
	on.Activate(false)
	h := NewHandler(on, ups)
	none, five := userSeries(0)
	send := func(ls labels.Labels, k int64, v float64) {
		t.Helper()
		if rec := post(t, h, ctV1, oneSeries(t, ls, prompb.Sample{Timestamp: k * retryStep, Value: v})); rec.Code != http.StatusNoContent {
			t.Fatalf("step %d %s: %d %s", k, ls, rec.Code, rec.Body)
		}
	}
	for k := int64(1); k <= 3; k++ {
		clock.Add(retryStep * time.Millisecond)
		send(none, k, float64(k))
		send(five, k, float64(10*k))
	}
	clock.Add(retryStep * time.Millisecond)
	send(none, 4, 4) // held: the 500 at step 4 is on another shard

	cfg := relabel.DefaultConfig()
	cfg.Presets = nil
	off, err := relabel.New(cfg, nil, merger)
	if err != nil {
		t.Fatal(err)
	}
	off.Activate(false)
	h.Update(off, ups)
	send(five, 4, 40) // the sender's request with the 500 of step 4, raw now
	clock.Add(retryStep * time.Millisecond)
	send(five, 5, 50)
	send(none, 5, 5)
	clock.Add(time.Minute)
	send(okTotal, 6, 6)

	if c := up.HeadConflicts(); len(c) > 0 {
		t.Fatalf("two values at one timestamp: %v", c)
	}
	got := up.HeadSeries()[five.String()]
	want := []rwtest.HeadSample{{T: 1 * retryStep, V: 11}, {T: 2 * retryStep, V: 22}, {T: 3 * retryStep, V: 33},
		{T: 4 * retryStep, V: 34}, // the held sample, finalized at the reload: the 500 at its latest
		{T: 5 * retryStep, V: 50}} // raw from then on
	if !slices.Equal(got, want) {
		t.Fatalf("500 series %v, want %v", got, want)
	}
	if n := merger.Pending(); n {
		t.Fatal("the retired output is still pending")
	}
}
