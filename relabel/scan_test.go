package relabel

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestScanByAge checks that the scan's order is the outputs' ids, with ids
// that fit the packed keys and with one that does not, scan after scan,
// and that a released scan keeps no output alive.
func TestScanByAge(t *testing.T) {
	var s scanOrder
	r := rand.New(rand.NewPCG(1, 2))
	for round, top := range []uint64{1 << 10, 1 << 40, 1<<44 - 1, 1 << 44, 1 << 62, 1 << 10} {
		set := map[*output]struct{}{}
		var ids []uint64
		for len(set) < 1+r.IntN(300) {
			id := 1 + r.Uint64N(top)
			if slices.Contains(ids, id) {
				continue
			}
			ids = append(ids, id)
			set[&output{id: id}] = struct{}{}
		}
		slices.Sort(ids)
		var got []uint64
		for _, o := range s.byAge(set) {
			got = append(got, o.id)
		}
		s.release()
		if !slices.Equal(got, ids) {
			t.Errorf("round %d (ids below %d): scanned %v, want %v", round, top, got, ids)
		}
		if slices.ContainsFunc(s.outs[:cap(s.outs)], func(o *output) bool { return o != nil }) {
			t.Errorf("round %d: the arrays keep outputs alive", round)
		}
	}
}

// TestScanByAgeAfterUnreleasedScan checks that a scan whose lists were
// never released (a panic in it) leaves nothing in the next one.
func TestScanByAgeAfterUnreleasedScan(t *testing.T) {
	var s scanOrder
	s.byAge(map[*output]struct{}{{id: 5}: {}, {id: 9}: {}}) // not released
	got := s.byAge(map[*output]struct{}{{id: 7}: {}})
	if len(got) != 1 || got[0].id != 7 {
		t.Fatalf("scanned %d outputs after an unreleased scan, want the one of this scan", len(got))
	}
}
