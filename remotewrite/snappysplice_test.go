package remotewrite

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/s2"
	"github.com/prometheus/client_golang/prometheus/testutil"
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
	name   string
	snappy bool // snappy's format (s2's own has a repeat code snappy decoders refuse)
	enc    func(raw []byte) []byte
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
	{"s2-snappy", true, func(raw []byte) []byte { return s2.EncodeSnappy(nil, raw) }},
	{"s2-snappy-better", true, func(raw []byte) []byte { return s2.EncodeSnappyBetter(nil, raw) }},
	{"s2", false, func(raw []byte) []byte { return s2.Encode(nil, raw) }},
	{"rwfix", true, func(raw []byte) []byte { return compress(nil, raw) }},
}

// randomBody builds a valid RW 1.0 (or 2.0) request of n LiteLLM-like
// series whose label values vary in length (so that series straddle the
// 64 KiB windows at every alignment), some of them random bytes (which do
// not compress), with 1-3 samples each and sometimes metadata.
func randomBody(t testing.TB, rng *rand.Rand, n int, rw2 bool) []byte {
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
	return marshalAs(t, req, rw2)
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
			if rng.IntN(2) == 0 {
				// Only its values changed: written in place when it can be
				// (see patchable).
				smp = slices.Clone(s.Samples(i))
				later := rng.IntN(2) == 0 // and the timestamps: a held sample's (see patchable)
				for k := range smp {
					smp[k].V += float64(1 + rng.IntN(1e6))
					if later {
						smp[k].T -= int64(rng.IntN(3)) * 15_000
					}
				}
			}
			srcs := []int{i}
			if j := rng.IntN(n); j != i && rng.IntN(3) == 0 {
				// A merged output of two sources in i's slot (relabel's
				// writeEmits: the genuine series'), the other dropped:
				// blankable, when not written in place.
				srcs = append(srcs, j)
				slices.Sort(srcs)
				s.Drop(j)
			}
			s.SetSamples(i, smp, srcs)
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
			t.Fatalf("%s: spliced block (%d bytes reused) decodes to %d bytes (%v), want the request's %d", name, reused, len(d), err, len(out))
		}
	}
}

// spliceCase runs one body through random edits and every sender encoder,
// and checks the spliced block against the full re-encode.
func spliceCase(t *testing.T, seed uint64, rw2 bool, nSeries int, mode uint8) {
	rng := rand.New(rand.NewPCG(seed, 7))
	raw := randomBody(t, rng, nSeries, rw2)
	s, err := scan(protoFor(rw2), raw)
	if err != nil {
		t.Fatal(err)
	}
	defer s.release()
	randomEdits(rng, s, mode)
	s.blank = []float64{0, DefaultBlankShare, 1}[seed%3] // cut out, blanked up to the default share, always blanked
	out := s.encode(nil)
	kept := 0
	for _, r := range s.kept {
		kept += int(r.n)
	}
	for _, e := range senderEncoders {
		in := e.enc(raw)
		got, reused := s.compressSpliced(nil, in, out)
		checkSpliced(t, got, reused, out)
		if !e.snappy {
			continue
		}
		// A snappy sender: its elements are reused when most of the
		// request is kept, and all of them when nothing changed.
		if s.worthSplicing(len(out)) && kept >= 4096 && reused == 0 {
			t.Fatalf("%s: %d of %d bytes kept, nothing reused", e.name, kept, len(out))
		}
		if !s.changed() && !bytes.Equal(got, in) {
			t.Fatalf("%s: nothing changed, yet the block is not the sender's", e.name)
		}
	}
}

// forwardCase is spliceCase for the handler's path: encodeForward (which
// blanks the series it changes in the request's own bytes when it can)
// and compressForward (compressInPlace's walk when it did). The block must
// decode to exactly the request it made, head and tail.
func forwardCase(t *testing.T, seed uint64, rw2 bool, nSeries int, mode uint8) {
	rng := rand.New(rand.NewPCG(seed, 7))
	raw := randomBody(t, rng, nSeries, rw2)
	s, err := scan(protoFor(rw2), slices.Clone(raw)) // blanked in place: raw stays the sender's
	if err != nil {
		t.Fatal(err)
	}
	defer s.release()
	randomEdits(rng, s, mode)
	s.blank = []float64{0, DefaultBlankShare, 1}[seed%3]
	blank, whole := s.blanking()
	head, tail := s.encodeForward(nil, blank, whole)
	out := slices.Concat(head, tail)
	for _, e := range senderEncoders {
		got, reused := s.compressForward(nil, e.enc(raw), head, tail)
		checkSpliced(t, got, reused, out)
		if head != nil && e.snappy && reused == 0 {
			t.Fatalf("%s: the request was blanked in place, yet its block was not walked", e.name)
		}
	}
}

// FuzzSnappySplice is the differential test of compressSpliced and of
// compressForward: random bodies (RW 1.0 and 2.0, up to a few MiB), random
// edits, bodies from every sender encoder; the spliced block must decode to
// exactly what the full re-encode decodes to. .ci/run fuzzes it; its seeds
// run in every go test.
func FuzzSnappySplice(f *testing.F) {
	for i, c := range []struct {
		n    uint16
		mode uint8
	}{{0, 0}, {1, 1}, {40, 1}, {300, 1}, {900, 1}, {900, 2}, {900, 3}, {900, 0}, {2000, 1}, {2000, 3}, {600, 4}} {
		f.Add(uint64(i), i%2 == 1, c.n, c.mode)
	}
	f.Fuzz(func(t *testing.T, seed uint64, rw2 bool, n uint16, mode uint8) {
		spliceCase(t, seed, rw2, int(n%4000), mode)
		forwardCase(t, seed, rw2, int(n%4000), mode)
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

// TestSnappySpliceElements: hand-made blocks and edits, one per way an
// element is treated — kept as it came, a copy pointed again at its source's
// new place, bytes compressed anew — each checked by decoding, with the
// bytes of out the reused elements decode to.
func TestSnappySpliceElements(t *testing.T) {
	abcd, xxxx := []byte("abcd"), []byte("XXXX")
	run := func(raw, out, n int) keptSpan { return keptSpan{raw: uint32(raw), out: uint32(out), n: uint32(n)} }
	for _, tc := range []struct {
		name   string
		in     []byte // the sender's block
		kept   []keptSpan
		newAt  map[int][]byte // new bytes of out, by where they go
		reused int
		want   []byte // the spliced block, when it is given exactly
	}{
		{
			name: "all kept: the sender's block",
			in:   elements{}.lit(abcd).copy1(4, 8).copy2(2, 3).copy4(1, 1).block(16),
			kept: []keptSpan{run(0, 0, 16)}, reused: 16,
			want: elements{}.lit(abcd).copy1(4, 8).copy2(2, 3).copy4(1, 1).block(16),
		},
		{
			name: "a copy from an earlier run, pointed again",
			in:   elements{}.lit(append(slices.Clone(abcd), xxxx...)).copy1(8, 4).block(12),
			kept: []keptSpan{run(0, 0, 4), run(8, 4, 4)}, reused: 4,
			want: elements{}.lit(abcd).copy1(4, 4).block(8),
		},
		{
			name:   "a copy from an earlier run beyond 64 KiB, with a 4-byte offset",
			in:     elements{}.lit(abcd).lit(bytes.Repeat([]byte{'y'}, 1<<16)).copy4(1<<16+4, 4).block(1<<16 + 8),
			kept:   []keptSpan{run(0, 0, 4+1<<16), run(4+1<<16, 12+1<<16, 4)},
			newAt:  map[int][]byte{4 + 1<<16: []byte("zzzzzzzz")}, // the source now 65,548 bytes back
			reused: 4 + 1<<16 + 4,
		},
		{
			name: "a copy whose source was dropped: compressed anew",
			in:   elements{}.lit(append(slices.Clone(xxxx), abcd...)).copy1(8, 4).block(12),
			kept: []keptSpan{run(4, 0, 8)}, reused: 0,
			want: elements{}.lit(append(slices.Clone(abcd), xxxx...)).block(8),
		},
		{
			name: "a copy cut by a new byte, from its own run",
			in:   elements{}.lit([]byte("a")).copy2(1, 20).block(21),
			kept: []keptSpan{run(0, 0, 10), run(10, 11, 11)}, newAt: map[int][]byte{10: []byte("Z")},
			reused: 1 + 9, // the literal, and the copy up to the Z; after it the source holds the Z
		},
		{
			name: "kept runs moved by new bytes before them",
			in:   elements{}.lit(abcd).copy1(4, 4).lit(xxxx).copy1(4, 4).block(16),
			kept: []keptSpan{run(8, 5, 8)}, newAt: map[int][]byte{0: []byte("new-b")}, reused: 8,
		},
		{
			name: "a copy cut into pieces by two runs",
			in:   elements{}.lit([]byte("0123456789abcdef")).copy2(16, 16).block(32),
			kept: []keptSpan{run(0, 0, 16), run(16, 16, 6), run(24, 22, 8)}, reused: 16 + 6 + 8,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := snappy.Decode(nil, tc.in)
			if err != nil {
				t.Fatal(err)
			}
			var out []byte
			pos := 0
			for _, r := range tc.kept {
				for pos < int(r.out) {
					b := tc.newAt[pos]
					if len(b) == 0 {
						t.Fatalf("no new bytes at %d", pos)
					}
					out, pos = append(out, b...), pos+len(b)
				}
				out, pos = append(out, raw[r.raw:r.raw+r.n]...), pos+int(r.n)
			}
			s := &scanned{raw: raw, kept: tc.kept}
			got, reused := s.compressSpliced(nil, tc.in, out)
			checkSpliced(t, got, reused, out)
			if reused != tc.reused {
				t.Errorf("reused elements decode to %d bytes, want %d", reused, tc.reused)
			}
			if tc.want != nil && !bytes.Equal(got, tc.want) {
				t.Errorf("block %x, want %x", got, tc.want)
			}
		})
	}
}

// hostileRuns is a block whose one-byte copies alternate between a source in
// the first kept run and one in the run before, over 2,000 runs of a
// request whose bytes between runs were replaced (the same length): a walk
// that looked for each source by stepping across the runs would take time
// in elements × runs (BenchmarkSnappySplice's "hostile" case measures it).
func hostileRuns() (s *scanned, in, out []byte) {
	const runs, runLen = 2000, 100
	n := runs * (runLen + 1)
	raw := bytes.Repeat([]byte{'a'}, n)
	e := elements{}.lit([]byte{'a'})
	for d := 1; d < n; d++ {
		if d%2 == 0 {
			e = e.copy4(d, 1) // from byte 0: run 0
		} else {
			e = e.copy2(min(d, runLen+1), 1) // from the run before
		}
	}
	var kept []keptSpan
	for j := range runs {
		if j > 0 {
			out = append(out, 'b') // the byte between, replaced: same length
		}
		kept = append(kept, keptSpan{raw: uint32(j * (runLen + 1)), out: uint32(len(out)), n: runLen})
		out = append(out, raw[j*(runLen+1):j*(runLen+1)+runLen]...)
	}
	return &scanned{raw: raw, kept: kept}, e.block(n), append(out, 'b')
}

// TestSnappySpliceHostileRuns: the hostile block splices right.
func TestSnappySpliceHostileRuns(t *testing.T) {
	s, in, out := hostileRuns()
	got, reused := s.compressSpliced(nil, in, out)
	checkSpliced(t, got, reused, out)
}

// TestSnappySpliceFallsBack: when the walk refuses the sender's block,
// compressSpliced gives exactly compress' block, and reuses nothing. The
// request here is copied whole, so that only the walk can refuse.
func TestSnappySpliceFallsBack(t *testing.T) {
	raw := randomBody(t, rand.New(rand.NewPCG(1, 2)), 1000, false)
	block := snappy.Encode(nil, raw)
	_, hdr := binary.Uvarint(block)
	abcd := []byte("abcd")
	for _, tc := range []struct {
		name    string
		raw, in []byte
	}{
		{"s2 format (repeat codes)", raw, s2.Encode(nil, raw)},
		{"offset 0", slices.Concat(abcd, abcd), elements{}.lit(abcd).copy1(0, 4).block(8)},
		{"copy before any literal", abcd, elements{}.copy1(1, 4).block(4)},
		{"copy reaching before the block", slices.Concat(abcd, abcd), elements{}.lit(abcd).copy1(5, 4).block(8)},
		{"element past the request's end", abcd, elements{}.lit([]byte("ab")).copy1(2, 4).block(4)},
		{"truncated element", raw, block[:len(block)-1]},
		{"truncated literal length", make([]byte, 300), append(elements{}.block(300), 60<<2)},
		{"truncated long-literal length", make([]byte, 300), append(elements{}.block(300), 61<<2, 0x2b)},
		{"truncated copy4", slices.Concat(abcd, abcd), elements{}.lit(abcd).copy4(4, 4).block(8)[:8]},
		{"header longer than the request", raw, append(binary.AppendUvarint(nil, uint64(len(raw)+1)), block[hdr:]...)},
		{"header shorter than the request", raw, append(binary.AppendUvarint(nil, uint64(len(raw)-1)), block[hdr:]...)},
		{"no header", raw, nil},
		{"bad header", raw, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &scanned{raw: tc.raw, kept: []keptSpan{{raw: 0, out: 0, n: uint32(len(tc.raw))}}}
			got, reused := s.compressSpliced(nil, tc.in, tc.raw)
			if reused != 0 || !bytes.Equal(got, compress(nil, tc.raw)) {
				t.Fatalf("reused %d bytes; want compress' block", reused)
			}
		})
	}
	// The same request copied whole from a snappy encoder's block: the
	// sender's block as it came, whichever encoder.
	for _, e := range senderEncoders {
		in := e.enc(raw)
		s := &scanned{raw: raw, kept: []keptSpan{{raw: 0, out: 0, n: uint32(len(raw))}}}
		got, reused := s.compressSpliced(nil, in, raw)
		if e.snappy && (reused != len(raw) || !bytes.Equal(got, in)) {
			t.Errorf("%s: reused %d of %d bytes", e.name, reused, len(raw))
		}
	}
}

// TestHandlerReusesSenderElements: a 2,000-series request from Prometheus'
// encoder with one series to repair reaches the upstream as the full
// re-encode's request, with the sender's compressed bytes after the repair
// in it (the repair shortens the request by a byte: they land shifted).
func TestHandlerReusesSenderElements(t *testing.T) {
	for _, c := range []struct {
		name    string
		none    float64
		blanked bool
		s2      bool // the sender's block in s2's format: not walked
	}{
		// One repair: cut out, the copies across it pointed again.
		{"one", 1.0 / 2000, false, false},
		// One series in ten: blanked in place (see blankTag).
		{"tenth", 0.1, true, false},
		// Blanked in the decoded request, which is then compressed
		// whole: the walk refuses s2's repeat codes.
		{"tenth from s2", 0.1, true, true},
	} {
		for _, rw2 := range []bool{false, true} {
			t.Run(c.name+"/"+protoLabel(string(protoFor(rw2))), func(t *testing.T) {
				raw := firstRequest(t, rwtest.Workload{Series: 2000, Rounds: 1, NoneRatio: c.none}, rw2)
				in, err := compression.Encode(compression.Snappy, raw, nil)
				if err != nil {
					t.Fatal(err)
				}
				if c.s2 {
					in = s2.Encode(nil, raw)
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
				// Most of the sender's block is in the forwarded block as it
				// came: reused (64-byte pieces of it, each found in it).
				found, pieces := 0, 0
				for off := 0; off+64 <= len(in); off += 64 {
					pieces++
					if bytes.Contains(reqs[0].Body, in[off:off+64]) {
						found++
					}
				}
				if !c.s2 && found < pieces*3/4 {
					t.Fatalf("%d of %d 64-byte pieces of the sender's block in the forwarded block: not reused", found, pieces)
				}
				n := testutil.ToFloat64(h.metrics.blanked)
				switch {
				case !c.blanked && n != 0:
					t.Fatalf("rwfix_forwarded_blanked_bytes_total = %v, want 0: one repair is cut out", n)
				case c.blanked && (n < float64(len(raw))/40 || n > float64(len(raw))*DefaultBlankShare):
					t.Fatalf("rwfix_forwarded_blanked_bytes_total = %v, want the bytes of the repaired series (about a tenth of the counters' of %d)", n, len(raw))
				}
			})
		}
	}
}

// BenchmarkSnappySplice compares compressing a repaired request in full with
// reusing the sender's elements, on a 2,000-sample RW 1.0 request from
// Prometheus' encoder (golang/snappy): status_code="None" repaired to "500"
// on one series, on 10 (0.5%) and on every tenth (10%); and "held=6%", the
// clean workload's shape, where each genuine 500 (one series in 16) leaves
// the request, held by the merge, and as many come at its end (the ones
// held from the request before); and "merged=6%", the same outputs sent
// in place with the sample they held from the scrape before. Each iteration encodes the request, then
// compresses it both ways, in turn, so that both see the same machine: it
// reports each way's CPU time per request (the thread's, the goroutine
// locked to it: on a shared machine wall time also counts the waits for a
// core), encode and compress, encode alone, and the ratio reuse/full. Run:
//
//	go test -run '^$' -bench SnappySplice -count 6 ./remotewrite > splice.txt
//	go run golang.org/x/perf/cmd/benchstat@latest splice.txt
func BenchmarkSnappySplice(b *testing.B) {
	for _, c := range []struct {
		name string
		w    rwtest.Workload
		held bool
	}{
		{"changed=1", rwtest.Workload{Series: 2000, Rounds: 1, NoneRatio: 1.0 / 2000}, false},
		{"changed=0.5%", rwtest.Workload{Series: 2000, Rounds: 1, NoneRatio: 0.005}, false},
		{"changed=10%", rwtest.Workload{Series: 2000, Rounds: 1, NoneRatio: 0.1}, false},
		{"held=6%", rwtest.Workload{Series: 2000, Rounds: 1}, true},
		{"merged=6%", rwtest.Workload{Series: 2000, Rounds: 1}, false},
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
			ls := s.Labels(i, &sb)
			switch {
			case !c.held && ls.Get("status_code") == "None":
				s.SetLabels(i, labels.NewBuilder(ls).Set("status_code", "500").Labels())
			case c.held && i%16 == 7:
				s.Drop(i)
				s.AppendSeries(labels.NewBuilder(ls).Set("hashed_api_key", strconv.Itoa(i)).Labels(), []series.Sample{{T: 1_700_000_000_000, V: float64(i)}})
			case c.name == "merged=6%" && i%16 == 7:
				smp := s.Samples(i)
				s.SetLabels(i, ls)
				s.SetSamples(i, []series.Sample{{T: smp[0].T - 15_000, V: smp[0].V - float64(min(1, int(smp[0].V)/2))}}, []int{i})
			}
		}
		for _, blank := range []float64{0, DefaultBlankShare} {
			s.blank = blank
			name := c.name + "/cut"
			if blank > 0 {
				name = c.name + "/blanked"
			}
			b.Run(name, func(b *testing.B) {
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
				b.ReportMetric(float64(reused)/float64(len(buf)), "share-reused")
				b.ReportMetric(float64(len(full)), "full-bytes")
				b.ReportMetric(float64(len(spliced)), "reuse-bytes")
			})
		}
		// The handler's path: encodeForward blanks the request in place
		// when it can (the blanked rows), so the request is restored
		// after each iteration, outside the times.
		s.blank = DefaultBlankShare
		b.Run(c.name+"/forward", func(b *testing.B) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			pristine := slices.Clone(s.raw)
			var buf, spliced []byte
			var enc, tReuse time.Duration
			for b.Loop() {
				t0 := threadCPU(b)
				var head []byte
				blank, whole := s.blanking()
				head, buf = s.encodeForward(buf[:0], blank, whole)
				t1 := threadCPU(b)
				spliced, _ = s.compressForward(spliced, in, head, buf)
				t2 := threadCPU(b)
				enc, tReuse = enc+t1-t0, tReuse+t2-t1
				copy(s.raw, pristine)
			}
			per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) }
			b.ReportMetric(per(enc+tReuse), "reuse-cpu-ns/op")
			b.ReportMetric(per(enc), "encode-cpu-ns/op")
			b.ReportMetric(float64(len(spliced)), "reuse-bytes")
		})
		s.release()
	}
	b.Run("hostile", func(b *testing.B) {
		s, in, out := hostileRuns()
		var full, spliced []byte
		var tFull, tReuse time.Duration
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for b.Loop() {
			t0 := threadCPU(b)
			full = compress(full, out)
			t1 := threadCPU(b)
			spliced, _ = s.compressSpliced(spliced, in, out)
			t2 := threadCPU(b)
			tFull, tReuse = tFull+t1-t0, tReuse+t2-t1
		}
		b.ReportMetric(float64(tReuse)/float64(tFull), "reuse/full")
	})
}

// threadCPU is the CPU time of the calling thread.
func threadCPU(b *testing.B) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ts.Nano())
}

// TestCompressInPlaceElements: hand-made blocks with holes (bytes changed
// in place, as blanking changes a series' tag), one case per way an element
// is treated, each checked by decoding with golang/snappy and s2; and
// blocks it must refuse.
func TestCompressInPlaceElements(t *testing.T) {
	abcdefgh := []byte("abcdefgh")
	for _, tc := range []struct {
		name  string
		in    []byte
		holes []int
		tail  string
		// want: the elements it must write (nil: only check decoding)
		want []byte
	}{
		{
			name:  "no hole: the sender's elements, then the tail",
			in:    elements{}.lit(abcdefgh).copy1(8, 8).block(16),
			tail:  "",
			want:  elements{}.lit(abcdefgh).copy1(8, 8).block(16),
			holes: nil,
		},
		{
			name:  "a hole in a literal: written into it",
			in:    elements{}.lit(abcdefgh).copy1(8, 8).block(16),
			holes: []int{2},
			// the copy takes bytes 0-7, the hole among them: a literal
			want: elements{}.lit([]byte("ab\x7adefgh")).lit([]byte("abcdefgh")).block(16),
		},
		{
			name:  "a hole in a copy's bytes: the copy becomes a literal",
			in:    elements{}.lit(abcdefgh).copy1(8, 8).copy2(16, 4).block(20),
			holes: []int{12},
			// the copy2 reads bytes 0-3: no hole, kept
			want: elements{}.lit(abcdefgh).lit([]byte("abcd\x7afgh")).copy2(16, 4).block(20),
		},
		{
			name:  "a copy from the last hole itself: a literal",
			in:    elements{}.lit(abcdefgh).copy1(8, 4).lit([]byte("ijklmnop")).block(20),
			holes: []int{0},
			// the copy's source starts at the hole: its bytes are the
			// request's, not the hole's new byte (the literal after it
			// keeps the copy off the block's last bytes, which the walk
			// parses apart)
			want: elements{}.lit([]byte("\x7abcdefgh")).lit([]byte("abcd")).lit([]byte("ijklmnop")).block(20),
		},
		{
			name:  "an overlapping copy (a repeat) across a hole",
			in:    elements{}.lit([]byte("a")).copy2(1, 30).block(31),
			holes: []int{0},
		},
		{
			name:  "a hole at the last byte, and a tail",
			in:    elements{}.lit(abcdefgh).copy4(8, 8).block(16),
			holes: []int{15},
			tail:  "the new bytes after the request",
		},
		{
			name:  "holes in a long literal",
			in:    elements{}.lit(bytes.Repeat(abcdefgh, 40)).copy2(320, 64).block(384),
			holes: []int{0, 100, 319},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := snappy.Decode(nil, tc.in)
			if err != nil {
				t.Fatal(err)
			}
			out := append(slices.Clone(raw), tc.tail...)
			for _, x := range tc.holes {
				out[x] = blankTag
			}
			bits := make([]uint64, len(raw)/64+2)
			got, ok := compressInPlace(nil, tc.in, out[:len(raw)], out[len(raw):], tc.holes, bits)
			if !ok {
				t.Fatal("refused a valid block")
			}
			if slices.ContainsFunc(bits, func(w uint64) bool { return w != 0 }) {
				t.Fatal("the scratch bits are not returned zero")
			}
			checkSpliced(t, got, 0, out)
			if tc.want != nil {
				want := append(binary.AppendUvarint(nil, uint64(len(out))), tc.want[len(binary.AppendUvarint(nil, uint64(len(raw)))):]...)
				if !bytes.Equal(got, want) {
					t.Fatalf("elements\n%x\nwant\n%x", got, want)
				}
			}
		})
	}
	for _, tc := range []struct {
		name string
		in   []byte
		raw  int
	}{
		{"a copy with offset 0 (s2's repeat)", elements{}.lit(abcdefgh).copy2(0, 4).block(12), 12},
		{"a copy reaching before the block", elements{}.lit(abcdefgh).copy2(9, 4).block(12), 12},
		{"a header that is not the request's length", elements{}.lit(abcdefgh).block(9), 8},
		{"truncated", elements{}.lit(abcdefgh).block(8)[:6], 8},
	} {
		t.Run("refuses/"+tc.name, func(t *testing.T) {
			raw := make([]byte, tc.raw)
			if _, ok := compressInPlace(nil, tc.in, raw, nil, nil, make([]uint64, tc.raw/64+2)); ok {
				t.Fatal("walked a block it must refuse")
			}
		})
	}
}
