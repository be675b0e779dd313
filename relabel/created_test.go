package relabel

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
)

// TestCreatedChangedAtOrBeforeTheGap: a source said creation time 240.306 s
// from 246.411 s to 366.411 s; its next _created sample the state has is at
// 636.411 s (those of its new life were cut by a power loss), after a gap
// that began at 621.412 s. A creation time after the gap began is a
// creation at 636.411 s (again); one at or before it (403.39 s) is a
// creation inside what the state counted (earlier: unknown where), not one
// at 636.411 s (sim all seed 20001895); the same one is neither.
func TestCreatedChangedAtOrBeforeTheGap(t *testing.T) {
	ls := labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_created", "status_code", "500", "user", "u1")
	k, ok := familyKey(ls)
	if !ok {
		t.Fatal("no family")
	}
	const life, gone, at = 246_411, 621_412, 636_411
	for _, c := range []struct {
		name           string
		v              float64
		again, earlier bool
	}{
		{"created after the gap began", 630.0, true, false},
		{"created before the gap began", 403.39, false, true},
		{"the same creation time", 240.306, false, false},
	} {
		var ct createdTimes
		for ts := int64(246_411); ts <= 366_411; ts += 15_000 {
			ct.saw(k, ts, 240.306)
		}
		ct.saw(k, at, c.v)
		again, earlier := ct.changed(k, life, gone, at)
		if again != c.again || earlier != c.earlier {
			t.Errorf("%s (%v): again %v earlier %v, want %v %v", c.name, c.v, again, earlier, c.again, c.earlier)
		}
	}
}

// TestCreatedTimesHeapBytes: what the creation times say they hold (which
// the state's estimate of its heap adds) is what they retain, as families
// come, say one creation time or several (up to createdKept: each restart
// a new one), are restored from a snapshot and are forgotten; nothing once
// all are forgotten.
func TestCreatedTimesHeapBytes(t *testing.T) {
	const families = 50_000
	lss := make([]labels.Labels, families)
	for i := range lss {
		lss[i] = labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_created", "user", fmt.Sprintf("u%06d", i))
	}
	before := retainedHeap()
	c := &createdTimes{}
	for i, ls := range lss {
		k, _ := familyKey(ls)
		for j := range 1 + i%3*i%11 { // 1 span for most; up to createdKept, some shifted out
			c.saw(k, int64(j+1)*step, createdAt+float64(j)*60)
			c.saw(k, int64(j+1)*step+1, createdAt+float64(j)*60) // the same creation time: no new span
		}
	}
	for i := 0; i < families; i += 7 {
		c.restore(lss[i], c.spans(lss[i]))
	}
	for i := 0; i < families; i += 5 {
		c.forget(lss[i])
	}
	retained := int64(retainedHeap() - before)
	est := c.heapBytes()
	t.Logf("%d families, %d kept: retained %d B, estimated %d", families, len(c.m), retained, est)
	if est < retained*95/100 || est > retained*125/100 {
		t.Fatalf("estimated %d bytes, retained %d", est, retained)
	}
	for _, ls := range lss {
		c.forget(ls)
	}
	if est := c.heapBytes(); est != 0 || len(c.m) != 0 {
		t.Fatalf("all forgotten: %d families, %d bytes estimated", len(c.m), est)
	}
	runtime.KeepAlive(c)
}
