package relabel

import (
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// TestSetProcessClock: a state on a clock of its own that stands for a
// running process (the fault simulation's rwfix) treats the samples of its
// first minute as retries, as the wall clock's does; SetClock's (offline
// runs) does not.
func TestSetProcessClock(t *testing.T) {
	out := labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_total", "status_code", "500", "user", "clock")
	src := labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_total", "status_code", "None", "user", "clock")
	start := time.UnixMilli(1_750_000_000_000)
	for _, process := range []bool{true, false} {
		m := NewMerger(DefaultCollisionConfig(), nil)
		now := start
		clock := func() time.Time { return now }
		if process {
			m.SetProcessClock(clock)
		} else {
			m.SetClock(clock)
		}
		// Two samples within the first minute; then past any wait, so
		// that they are finalized and sent.
		for i, ts := range []int64{0, 15_000} {
			tx := m.Begin("")
			tx.Add(out, []labels.Labels{src, out}, [][]Sample{{{T: start.UnixMilli() + ts, V: float64(i)}}, {{T: start.UnixMilli() + ts, V: 1}}})
			tx.Collect()
			tx.Done(true, nil)
		}
		now = start.Add(DefaultMaxWait + time.Second)
		tx := m.Begin("")
		emits := tx.Collect()
		tx.Done(true, nil)
		if len(emits) == 0 {
			t.Fatalf("process clock %v: nothing sent after the wait", process)
		}
		for _, e := range emits {
			if e.Retry != process {
				t.Errorf("process clock %v: samples of the first minute sent with Retry %v, want %v", process, e.Retry, process)
			}
		}
	}
}
