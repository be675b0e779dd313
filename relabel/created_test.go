package relabel

import (
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
			ct.saw(ls, ts, 240.306)
		}
		ct.saw(ls, at, c.v)
		again, earlier := ct.changed(k, life, gone, at)
		if again != c.again || earlier != c.earlier {
			t.Errorf("%s (%v): again %v earlier %v, want %v %v", c.name, c.v, again, earlier, c.again, c.earlier)
		}
	}
}
