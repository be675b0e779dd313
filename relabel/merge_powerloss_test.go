package relabel

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMergeLateSampleBeforeTheHorizonCountedAfterAnotherRestart is
// TestMergeLateSampleBeforeTheHorizonCounted with a second restart (a
// SIGKILL, on the log the first restart compacted) before the lagging
// shard's sample arrives: the None's sample at t0+step, a timestamp no
// source held at the power loss's restart, is still sent at no timestamp,
// and must still be counted unknowable once, by one of the processes
// (guarantee 4: a gap is counted).
func TestMergeLateSampleBeforeTheHorizonCountedAfterAnotherRestart(t *testing.T) {
	h, dir, t0 := powerLossHarness(t)
	h.req(g(outTotal, srcNone, sp(t0, 1), src500, sp(t0, 1)))
	h.clock.add(2 * step * time.Millisecond)
	h.req(g(outTotal, src500, sp(t0+2*step, 2))) // the None's shard behind
	h.m.flushLog()
	powerLossRestart(t, h, dir)
	first := testutil.ToFloat64(h.m.metrics.unknown)
	if first != 1 {
		t.Fatalf("%v timestamps counted unknown at the restart, want 1 (t0+2*step)", first)
	}
	h.clock.add(time.Second)
	h.m.flushLog()
	crash(h.m)
	h.m = h.open(dir) // a SIGKILL: the same boot
	if h.m.powerLoss {
		t.Fatal("the second restart taken for a power loss")
	}
	h.req(g(outTotal, srcNone, sp(t0+step, 1)))   // late: its timestamp no source held
	h.req(g(outTotal, srcNone, sp(t0+2*step, 1))) // late: counted at the first restart already
	h.drain()
	got := h.values(outTotal)
	if _, ok := got[t0+step]; ok {
		t.Fatalf("sent at t0+step, before the horizon of a power loss: %v", got)
	}
	if n := first + testutil.ToFloat64(h.m.metrics.unknown); n != 2 {
		t.Fatalf("%v timestamps counted unknown by both processes, want 2 (t0+2*step, t0+step once)", n)
	}
}
