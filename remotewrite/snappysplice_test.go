package remotewrite

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/s2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/util/compression"
	"golang.org/x/sys/unix"

	"github.com/rwfix/rwfix/remotewrite/rwtest"
	"github.com/rwfix/rwfix/remotewrite/series"
	"github.com/rwfix/rwfix/remotewrite/wire"
)

// senderEncoders are the encoders a sender's body may come from: golang/snappy
// and Prometheus' own path to it (util/compression), which window; s2's
// snappy-compatible encoders and rwfix's compress, which match across 64 KiB;
// and s2's own format, which s2.Decode (the handler's decoder) reads too and
// whose repeat code snappy decoders refuse.
var senderEncoders = []struct {
	name     string
	windowed bool
	enc      func(raw []byte) []byte
}{
	{"golang-snappy", true, func(raw []byte) []byte { return snappy.Encode(nil, raw) }},
	{"prometheus", true, func(raw []byte) []byte {
		b, err := compression.Encode(compression.Snappy, raw, nil)
		if err != nil {
			panic(err)
		}
		if len(raw) == 0 { // Encode returns an empty input as it is
			return snappy.Encode(nil, raw)
		}
		return b
	}},
	{"s2-snappy", false, func(raw []byte) []byte { return s2.EncodeSnappy(nil, raw) }},
	{"s2-snappy-better", false, func(raw []byte) []byte { return s2.EncodeSnappyBetter(nil, raw) }},
	{"s2", false, func(raw []byte) []byte { return s2.Encode(nil, raw) }},
	{"rwfix", false, func(raw []byte) []byte { return compress(nil, raw) }},
}

// randomBody builds a valid RW 1.0 (or 2.0) request of n LiteLLM-like
// series whose label values vary in length (so that series straddle the
// 64 KiB windows at every alignment), some of them random bytes (which do
// not compress), with 1-3 samples each and sometimes metadata.
func randomBody(rng *rand.Rand, n int, rw2 bool) []byte {
	codes := []string{"200", "500", "None", "429", "503"}
	req := &prompb.WriteRequest{}
	for i := range n {
		key := make([]byte, 8+rng.IntN(40))
		for j := range key {
			key[j] = byte(rng.Uint32())
		}
		ls := labels.FromStrings(
			"__name__", "litellm_proxy_total_requests_metric_total",
			"hashed_api_key", hex.EncodeToString(key),
			"model", []string{"gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet"}[rng.IntN(3)],
			"status_code", codes[rng.IntN(len(codes))],
			"team", fmt.Sprintf("team-%d-%s", i, bytes.Repeat([]byte{'x'}, rng.IntN(30))),
			"user", fmt.Sprintf("u%05d", i))
		ts := prompb.TimeSeries{Labels: prompb.FromLabels(ls, nil)}
		for j := range 1 + rng.IntN(3) {
			ts.Samples = append(ts.Samples, prompb.Sample{Value: float64(rng.IntN(1000)), Timestamp: 1_700_000_000_000 + int64(j)*1000})
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	if rng.IntN(3) == 0 {
		req.Metadata = []prompb.MetricMetadata{{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "litellm_proxy_total_requests_metric", Help: "total"}}
	}
	var raw []byte
	var err error
	if rw2 {
		raw, err = toV2(req).Marshal()
	} else {
		raw, err = req.Marshal()
	}
	if err != nil {
		panic(err)
	}
	return raw
}

// randomEdits changes series of s through its series.Batch, as a repair
// does: relabels (to a value of another length, or with a label added),
// merges (new samples), drops, and appended series. mode picks how many:
// none, one, a few, 10%, or all.
func randomEdits(rng *rand.Rand, s *scanned, mode uint8) {
	n := s.Len()
	if n == 0 {
		return
	}
	var pick []int
	switch mode % 5 {
	case 1:
		pick = []int{rng.IntN(n)}
	case 2:
		for range 1 + rng.IntN(5) {
			pick = append(pick, rng.IntN(n))
		}
	case 3:
		for i := range n {
			if rng.IntN(10) == 0 {
				pick = append(pick, i)
			}
		}
	case 4:
		for i := range n {
			pick = append(pick, i)
		}
	}
	var sb labels.ScratchBuilder
	for _, i := range pick {
		switch rng.IntN(6) {
		case 0, 1, 2:
			b := labels.NewBuilder(s.Labels(i, &sb))
			if rng.IntN(2) == 0 {
				b.Set("status_code", []string{"500", "5000", "5"}[rng.IntN(3)])
			} else {
				b.Set("repaired", "yes")
			}
			s.SetLabels(i, b.Labels())
		case 3:
			smp := []series.Sample{{T: 1_700_000_000_000, V: float64(rng.IntN(1e6))}}
			s.SetSamples(i, smp, []int{i})
		case 4:
			s.Drop(i)
		case 5:
			s.AppendSeries(labels.FromStrings("__name__", "appended", "i", strconv.Itoa(i)), []series.Sample{{T: 1, V: 2}})
		}
	}
}

// checkSpliced: the spliced block decodes, with golang/snappy (as Prometheus
// decodes) and with s2, to exactly what the full re-encode decodes to, and
// announces its length; without reuse it is the full re-encode's bytes.
func checkSpliced(t *testing.T, got []byte, reused int, out []byte) {
	t.Helper()
	want := compress(nil, out)
	if w, err := snappy.Decode(nil, want); err != nil || !bytes.Equal(w, out) {
		t.Fatalf("the full re-encode does not decode to the request: %v", err)
	}
	if n, err := snappy.DecodedLen(got); err != nil || n != len(out) {
		t.Fatalf("header: decoded length %d (%v), want %d", n, err, len(out))
	}
	for name, dec := range map[string]func([]byte, []byte) ([]byte, error){"golang/snappy": snappy.Decode, "s2": s2.Decode} {
		d, err := dec(nil, got)
		if err != nil || !bytes.Equal(d, out) {
			t.Fatalf("%s: spliced block (%d windows reused) decodes to %d bytes (%v), want the request's %d", name, reused, len(d), err, len(out))
		}
	}
	if reused == 0 && !bytes.Equal(got, want) {
		t.Fatal("no window reused, yet the block differs from compress'")
	}
}

// spliceCase runs one body through random edits and every sender encoder,
// and checks the spliced block against the full re-encode.
func spliceCase(t *testing.T, seed uint64, rw2 bool, nSeries int, mode uint8) {
	rng := rand.New(rand.NewPCG(seed, 7))
	raw := randomBody(rng, nSeries, rw2)
	s, err := scan(protoFor(rw2), raw)
	if err != nil {
		t.Fatal(err)
	}
	defer s.release()
	randomEdits(rng, s, mode)
	out := s.encode(nil)
	for _, e := range senderEncoders {
		in := e.enc(raw)
		got, reused := s.compressSpliced(nil, in, out)
		checkSpliced(t, got, reused, out)
		if !e.windowed {
			continue
		}
		// A windowed sender: every window left whole is reused, when
		// enough are.
		want := 0
		if worthWalking(s.reuse) > 0 {
			want = len(s.reuse)
		}
		if reused != want {
			t.Fatalf("%s: %d windows reused, want %d (%d unchanged)", e.name, reused, want, len(s.reuse))
		}
		if !s.changed() && !bytes.Equal(got, in) {
			t.Fatalf("%s: nothing changed, yet the block is not the sender's", e.name)
		}
	}
}

// FuzzSnappySplice is the differential test of compressSpliced: random
// bodies (RW 1.0 and 2.0, up to a few MiB), random edits, bodies from every
// sender encoder; the spliced block must decode to exactly what the full
// re-encode decodes to. .ci/run fuzzes it; its seeds run in every go test.
func FuzzSnappySplice(f *testing.F) {
	for i, c := range []struct {
		n    uint16
		mode uint8
	}{{0, 0}, {1, 1}, {40, 1}, {300, 1}, {900, 1}, {900, 2}, {900, 3}, {900, 0}, {2000, 1}, {2000, 3}, {600, 4}} {
		f.Add(uint64(i), i%2 == 1, c.n, c.mode)
	}
	f.Fuzz(func(t *testing.T, seed uint64, rw2 bool, n uint16, mode uint8) {
		spliceCase(t, seed, rw2, int(n%4000), mode)
	})
}

// elements builds snappy blocks by hand for the walk's tests.
type elements []byte

func (e elements) lit(b []byte) elements {
	n := len(b) - 1
	switch {
	case n < 60:
		e = append(e, byte(n<<2))
	case n < 1<<8:
		e = append(e, 60<<2, byte(n))
	case n < 1<<16:
		e = append(e, 61<<2, byte(n), byte(n>>8))
	default:
		e = append(e, 62<<2, byte(n), byte(n>>8), byte(n>>16))
	}
	return append(e, b...)
}

func (e elements) copy1(off, n int) elements {
	return append(e, byte(off>>8)<<5|byte(n-4)<<2|1, byte(off))
}

func (e elements) copy2(off, n int) elements {
	return append(e, byte(n-1)<<2|2, byte(off), byte(off>>8))
}

func (e elements) copy4(off, n int) elements {
	return append(e, byte(n-1)<<2|3, byte(off), byte(off>>8), byte(off>>16), byte(off>>24))
}

func (e elements) block(total int) []byte {
	return append(binary.AppendUvarint(nil, uint64(total)), e...)
}

// TestSnappyWindows: the walk accepts windowed blocks and finds their
// windows; it refuses, with the reason, every block whose windows cannot be
// reused — valid snappy or not — and never panics.
func TestSnappyWindows(t *testing.T) {
	win := bytes.Repeat([]byte("litellm_"), snappyWindow/8)
	abc := []byte("abcd")
	for _, tc := range []struct {
		name   string
		block  []byte
		want   error
		bounds int // windows found, when valid
	}{
		{"empty", elements{}.block(0), nil, 0},
		{"one short window", elements{}.lit(abc).copy1(4, 8).copy2(2, 3).copy4(1, 1).block(16), nil, 1},
		{"two windows", elements{}.lit(win).lit(abc).copy1(4, 6).block(snappyWindow + 10), nil, 2},
		{"three windows, copies within each", elements{}.lit(win[:100]).copy2(100, 64).copy4(64, 64).lit(win[:snappyWindow-228]).
			lit(win).lit(abc).copy1(3, 4).block(2*snappyWindow + 8), nil, 3},
		// Valid snappy, not windowed:
		{"copy reaching before its window", elements{}.lit(win).copy2(100, 8).block(snappyWindow + 8), errSnappyReach, 0},
		{"copy reaching one byte too far", elements{}.lit(win).lit(abc).copy1(5, 4).block(snappyWindow + 8), errSnappyReach, 0},
		{"literal across a window boundary", elements{}.lit(append(slices.Clone(win), 'x')).block(snappyWindow + 1), errSnappyStraddle, 0},
		{"copy across a window boundary", elements{}.lit(win[:snappyWindow-4]).copy1(8, 8).block(snappyWindow + 4), errSnappyStraddle, 0},
		{"offset 0 (s2's repeat code)", elements{}.lit(abc).copy1(0, 4).block(8), errSnappyReach, 0},
		// Not valid snappy:
		{"copy before any literal", elements{}.copy1(1, 4).block(4), errSnappyReach, 0},
		{"truncated copy", elements{}.lit(abc).copy2(4, 4).block(8)[:8], errSnappyTrunc, 0},
		{"truncated copy4", elements{}.lit(abc).copy4(4, 4).block(8)[:8], errSnappyTrunc, 0},
		{"truncated literal", elements{}.lit(win[:100]).block(100)[:50], errSnappyTrunc, 0},
		{"truncated literal length", append(elements{}.block(300), 60<<2), errSnappyTrunc, 0},
		{"truncated long-literal length", append(elements{}.block(300), 61<<2, 0x2b), errSnappyTrunc, 0},
		{"header longer than the elements", elements{}.lit(abc).copy1(4, 4).block(9), errSnappyLength, 0},
		{"header shorter than the elements", elements{}.lit(abc).copy1(4, 4).block(7), errSnappyLength, 0},
		{"header of an empty block, with elements", elements{}.lit(abc).block(0), errSnappyLength, 0},
		{"no header", nil, errSnappyHeader, 0},
		{"bad header", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, errSnappyHeader, 0},
		{"header beyond 2^32-1", binary.AppendUvarint(nil, 1<<32), errSnappyHeader, 0},
		// A walk limited to the last window still checks the end:
		{"elements after the last window", elements{}.lit(win).lit(abc).lit(abc).block(snappyWindow + 4), errSnappyLength, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			limit := math.MaxInt
			if tc.name == "elements after the last window" {
				limit = 2
			}
			bounds, _, err := snappyWindows(nil, tc.block, limit)
			if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if err != nil {
				return
			}
			if len(bounds) != tc.bounds+1 || int(bounds[len(bounds)-1]) != len(tc.block) {
				t.Fatalf("bounds %v for %d bytes, want %d windows", bounds, len(tc.block), tc.bounds)
			}
			// A walk stopped after k windows finds the same first ones.
			for k := 1; k < tc.bounds; k++ {
				part, _, err := snappyWindows(nil, tc.block, k)
				if err != nil || !slices.Equal(part, bounds[:k+1]) {
					t.Fatalf("walk of %d windows: %v (%v), want %v", k, part, err, bounds[:k+1])
				}
			}
			// Each window found decodes on its own to its bytes.
			whole, err := snappy.Decode(nil, tc.block)
			if err != nil {
				t.Fatal(err)
			}
			for k := range tc.bounds {
				w := whole[k*snappyWindow : min((k+1)*snappyWindow, len(whole))]
				got, err := snappy.Decode(nil, append(binary.AppendUvarint(nil, uint64(len(w))), tc.block[bounds[k]:bounds[k+1]]...))
				if err != nil || !bytes.Equal(got, w) {
					t.Fatalf("window %d does not decode on its own: %v", k, err)
				}
			}
		})
	}
}

// TestWorthWalking: the windows to reuse are walked when they are at least
// half of the windows up to the last of them.
func TestWorthWalking(t *testing.T) {
	for _, tc := range []struct {
		ks   []int
		want int
	}{
		{nil, 0},
		{[]int{0}, 1},
		{[]int{1}, 2},
		{[]int{2}, 0},
		{[]int{1, 3}, 4},
		{[]int{1, 4}, 0},
		{[]int{0, 2, 4, 6, 9}, 10},
		{[]int{0, 2, 4, 6, 10}, 0},
		{[]int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}, 14},
	} {
		var reuse []reusedWindow
		for _, k := range tc.ks {
			reuse = append(reuse, reusedWindow{k: k})
		}
		if got := worthWalking(reuse); got != tc.want {
			t.Errorf("windows %v: walk %d, want %d", tc.ks, got, tc.want)
		}
	}
}

// TestSnappySpliceFallsBack: when the walk refuses the sender's block,
// compressSpliced gives exactly compress' block, and reuses nothing. The
// request here is copied whole (every window unchanged), so that only the
// walk can refuse.
func TestSnappySpliceFallsBack(t *testing.T) {
	raw := randomBody(rand.New(rand.NewPCG(1, 2)), 1000, false)
	if len(raw) < 3*snappyWindow {
		t.Fatalf("body of %d bytes: want several windows", len(raw))
	}
	windowed := snappy.Encode(nil, raw)
	bounds, _, err := snappyWindows(nil, windowed, math.MaxInt)
	if err != nil {
		t.Fatal(err)
	}
	// Valid snappy whose window 1 starts with a literal, then copies the
	// request's first 4 bytes, from window 0.
	rawReach := slices.Concat(raw[:snappyWindow+1], raw[:4])
	reach := elements{}.lit(raw[:snappyWindow]).lit(raw[snappyWindow:snappyWindow+1]).copy4(snappyWindow+1, 4)
	for _, tc := range []struct {
		name    string
		raw, in []byte
	}{
		{"s2's encoder (matches across windows)", raw, s2.EncodeSnappy(nil, raw)},
		{"s2 format (repeat codes)", raw, s2.Encode(nil, raw)},
		{"rwfix's compress (256 KiB chunks)", raw, compress(nil, raw)},
		{"copy reaching before its window", rawReach, reach.block(len(rawReach))},
		{"truncated element", raw, windowed[:len(windowed)-1]},
		{"header longer than the elements", raw, append(binary.AppendUvarint(nil, uint64(len(raw)+1)), windowed[bounds[0]:]...)},
		{"header shorter than the request", raw, append(binary.AppendUvarint(nil, uint64(len(raw)-1)), windowed[bounds[0]:]...)},
		{"another request's block", raw, snappy.Encode(nil, raw[:len(raw)-1])},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &scanned{raw: tc.raw, kept: []keptSpan{{raw: 0, out: 0, n: uint32(len(tc.raw))}}}
			if len(s.reusableWindows()) == 0 {
				t.Fatal("no window to reuse: the test would not reach the walk")
			}
			got, reused := s.compressSpliced(nil, tc.in, tc.raw)
			if reused != 0 || !bytes.Equal(got, compress(nil, tc.raw)) {
				t.Fatalf("reused %d windows; want compress' block", reused)
			}
		})
	}
	// The same request copied whole from golang/snappy's block: every window
	// reused, the sender's block as it came.
	s := &scanned{raw: raw, kept: []keptSpan{{raw: 0, out: 0, n: uint32(len(raw))}}}
	if got, reused := s.compressSpliced(nil, windowed, raw); reused != len(bounds)-1 || !bytes.Equal(got, windowed) {
		t.Fatalf("reused %d of %d windows", reused, len(bounds)-1)
	}
}

// TestHandlerReusesSenderWindows: a 2,000-series request from Prometheus'
// encoder with one series to repair reaches the upstream as the full
// re-encode's request, and with the sender's compressed windows after the
// repair in it (the repair shortens the request by a byte: they land shifted).
func TestHandlerReusesSenderWindows(t *testing.T) {
	for _, rw2 := range []bool{false, true} {
		t.Run(protoLabel(string(protoFor(rw2))), func(t *testing.T) {
			w := rwtest.Workload{Series: 2000, Rounds: 1, NoneRatio: 1.0 / 2000}
			bodies, _ := w.RW1()
			if rw2 {
				bodies, _ = w.RW2()
			}
			raw, err := snappy.Decode(nil, bodies[0])
			if err != nil {
				t.Fatal(err)
			}
			in, err := compression.Encode(compression.Snappy, raw, nil)
			if err != nil {
				t.Fatal(err)
			}
			bounds, _, err := snappyWindows(nil, in, math.MaxInt)
			if err != nil || len(bounds) < 4 {
				t.Fatalf("%d windows, err %v: want several", len(bounds)-1, err)
			}
			want, changed := runFast(t, litellmPipeline(t, ""), string(protoFor(rw2)), raw)
			if !changed {
				t.Fatal("the request needs no repair: the test would not splice")
			}
			up := rwtest.NewRecordingUpstream(t)
			h := NewHandler(litellmPipeline(t, ""), []*Upstream{upstreamFor(t, up.URL, 10*time.Second)})
			if rec := post(t, h, wire.ContentType(protoFor(rw2)), in); rec.Code != http.StatusNoContent {
				t.Fatalf("answer %d: %s", rec.Code, rec.Body)
			}
			reqs := up.Requests()
			if len(reqs) != 1 || !bytes.Equal(reqs[0].Raw, want) {
				t.Fatalf("%d requests; the forwarded one is not the full re-encode's request", len(reqs))
			}
			last := in[bounds[len(bounds)-2]:bounds[len(bounds)-1]]
			if !bytes.Contains(reqs[0].Body, last) {
				t.Fatal("the sender's last window is not in the forwarded block: not reused")
			}
		})
	}
}

// BenchmarkSnappySplice compares compressing a repaired request in full with
// reusing the sender's untouched windows, on a 2,000-sample RW 1.0 request
// from Prometheus' encoder (golang/snappy) with status_code="None" repaired
// to "500" on one series, on 10 (0.5%) and on every tenth (10%). Each
// iteration encodes the request, then compresses it both ways, in turn, so
// that both see the same machine: it reports each way's CPU time per
// request (the thread's, the goroutine locked to it: on a shared machine
// wall time also counts the waits for a core), encode and compress, encode
// alone, and the ratio reuse/full. Run:
//
//	go test -run '^$' -bench SnappySplice -count 6 ./remotewrite > splice.txt
//	go run golang.org/x/perf/cmd/benchstat@latest splice.txt
func BenchmarkSnappySplice(b *testing.B) {
	for _, c := range []struct {
		name string
		w    rwtest.Workload
	}{
		{"changed=1", rwtest.Workload{Series: 2000, Rounds: 1, NoneRatio: 1.0 / 2000}},
		{"changed=0.5%", rwtest.Workload{Series: 2000, Rounds: 1, NoneRatio: 0.005}},
		{"changed=10%", rwtest.Workload{Series: 2000, Rounds: 1, NoneRatio: 0.1}},
	} {
		bodies, _ := c.w.RW1()
		raw, err := snappy.Decode(nil, bodies[0])
		if err != nil {
			b.Fatal(err)
		}
		in := snappy.Encode(nil, raw)
		s, err := scan(ProtoV1, raw)
		if err != nil {
			b.Fatal(err)
		}
		var sb labels.ScratchBuilder
		for i := range s.Len() {
			if ls := s.Labels(i, &sb); ls.Get("status_code") == "None" {
				s.SetLabels(i, labels.NewBuilder(ls).Set("status_code", "500").Labels())
			}
		}
		b.Run(c.name, func(b *testing.B) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var buf, full, spliced []byte
			var enc, tFull, tReuse time.Duration
			reused := 0
			for b.Loop() {
				t0 := threadCPU(b)
				buf = s.encode(buf[:0])
				t1 := threadCPU(b)
				full = compress(full, buf)
				t2 := threadCPU(b)
				spliced, reused = s.compressSpliced(spliced, in, buf)
				t3 := threadCPU(b)
				enc, tFull, tReuse = enc+t1-t0, tFull+t2-t1, tReuse+t3-t2
			}
			per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) }
			b.ReportMetric(per(enc+tFull), "full-cpu-ns/op")
			b.ReportMetric(per(enc+tReuse), "reuse-cpu-ns/op")
			b.ReportMetric(per(enc), "encode-cpu-ns/op")
			b.ReportMetric(float64(enc+tReuse)/float64(enc+tFull), "reuse/full")
			b.ReportMetric(float64(reused), "windows-reused")
			b.ReportMetric(float64(len(benchWindows(b, in))-1), "windows")
			b.ReportMetric(float64(len(full)), "full-bytes")
			b.ReportMetric(float64(len(spliced)), "reuse-bytes")
		})
		s.release()
	}
}

func benchWindows(b *testing.B, in []byte) []uint32 {
	bs, _, err := snappyWindows(nil, in, math.MaxInt)
	if err != nil {
		b.Fatal(err)
	}
	return bs
}

// threadCPU is the CPU time of the calling thread.
func threadCPU(b *testing.B) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ts.Nano())
}
