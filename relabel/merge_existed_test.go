package relabel

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
)

// cutLogAfterLast truncates the log in dir right after its last record of
// type typ: the records after it never reached the file (a SIGKILL right
// after the sync loop wrote the buffer between two records of one
// finalization: record takes the log's lock per record).
func cutLogAfterLast(t *testing.T, dir string, typ byte) { cutLogAtLast(t, dir, typ, true) }

// A recExisted whose finalization's record did not reach the log (a SIGKILL
// between the two) says nothing: the restarted process decides that
// finalization again, and logs its decision, so that a replay of its log
// decides alike. Left set, it decided the restarted process's finalization
// without a record (not in the snapshot, not logged again): a later replay
// took the None as born where the live process had not (a replacement: the
// 500's 5 dropped, 6 instead of 11).
func TestMergeExistedWithoutItsFinalIsDecidedAgain(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir)
	t.Cleanup(func() { h.m.Close() })
	h.clock.add(time.Hour)
	t0, cNone, c500, noneBorn, _ := noneFirstSeenAsThe500Goes(h)
	h.drain()
	h.m.flushLog()
	crash(h.m)
	cutLogAfterLast(t, dir, recExisted)
	h.m = h.open(dir) // SIGKILL: t0+2*step finalized again, live
	h.drain()
	h.m.flushLog()
	crash(h.m)
	h.m = h.open(dir) // SIGKILL: the second process's log replayed
	reborn := float64((t0 + 3*step) / 1000)
	h.scrapeCreated([]any{cNone, sp(t0+3*step, noneBorn), c500, sp(t0+3*step, reborn)},
		[]any{srcNone, sp(t0+3*step, 5), src500, sp(t0+3*step, 1)})
	h.drain()
	if got := h.values(outTotal); got[t0+2*step] != 10 || got[t0+3*step] != 11 {
		t.Fatalf("at 2*step %v, at 3*step %v: want 10 and 11 (all %v)", got[t0+2*step], got[t0+3*step], got)
	}
}

// TestMergeSourceFirstSeenAsTheOtherGoesIsNotAReplacement's _created
// output: the None, first seen as the 500 goes, was created (its _created
// value) before the output's frontier: it existed, no replacement there
// either. The output keeps the 500's earlier creation time (the carry of a
// source that vanished alone), as its _total output keeps the 500's count;
// it does not say a later one, as if the series had been created again, nor
// count an ambiguous restart. Live and replayed alike.
func TestMergeCreatedOutputSourceFirstSeenAsTheOtherGoesIsNotAReplacement(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(map[bool]string{false: "live", true: "replayed"}[restart], func(t *testing.T) {
			dir := t.TempDir()
			h := newHarness(t, dir)
			t.Cleanup(func() { h.m.Close() })
			h.clock.add(time.Hour)
			t0, cNone, _, noneBorn, fiveBorn := noneFirstSeenAsThe500Goes(h)
			h.drain()
			if restart {
				h.m.flushLog()
				crash(h.m)
				h.m = h.open(dir) // SIGKILL: the log is replayed
			}
			h.scrapeCreated([]any{cNone, sp(t0+3*step, noneBorn)}, []any{srcNone, sp(t0+3*step, 6)})
			h.drain()
			got, tot := h.values(outCreat), h.values(outTotal)
			for _, ts := range []int64{t0 + 2*step, t0 + 3*step} {
				if got[ts] != fiveBorn {
					t.Fatalf("_created at %d: %v, want %v, the 500's (all %v; _total %v)", ts-t0, got[ts], fiveBorn, got, tot)
				}
			}
			if tot[t0+2*step] != 10 || tot[t0+3*step] != 11 {
				t.Fatalf("_total: %v", tot)
			}
			if n := testutil.ToFloat64(h.m.metrics.ambiguous); n != 0 && !restart {
				t.Fatalf("%v ambiguous restarts counted, want 0", n)
			}
		})
	}
}

// noneFirstSeenAsThe500Goes scrapes the 500 (5, created 900 s before) twice,
// then its stale marker at the scrape where the merge first sees the None
// (5, created 600 s before: it lived all along). It returns the first
// scrape's timestamp, the two _created series and their creation times.
func noneFirstSeenAsThe500Goes(h *harness) (t0 int64, cNone, c500 labels.Labels, noneBorn, fiveBorn float64) {
	t0 = h.clock.now().UnixMilli()
	cNone, c500 = createdOf(srcNone), createdOf(src500)
	noneBorn, fiveBorn = float64(t0/1000-600), float64(t0/1000-900)
	h.scrapeCreated([]any{c500, sp(t0, fiveBorn)}, []any{src500, sp(t0, 5)})
	h.scrapeCreated([]any{c500, sp(t0+step, fiveBorn)}, []any{src500, sp(t0+step, 5)})
	h.scrapeCreated([]any{cNone, sp(t0+2*step, noneBorn), c500, sp(t0+2*step, stale)},
		[]any{srcNone, sp(t0+2*step, 5), src500, sp(t0+2*step, stale)})
	return t0, cNone, c500, noneBorn, fiveBorn
}
