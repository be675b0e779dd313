package remotewrite

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/rwfix/rwfix/relabel"
	"github.com/rwfix/rwfix/remotewrite/rwtest"
	"github.com/rwfix/rwfix/remotewrite/series"
	"github.com/rwfix/rwfix/remotewrite/wire"
)

// TestMergedSumWrittenInPlace: in the repair-heavy steady state (every
// None with its genuine 500 twin, both known to the merge, the sum sent at
// once) each merged output goes out in its genuine series' own bytes, with
// only the 8 bytes of its sample value changed: nothing is sent again after
// the request, the request keeps its length, and it decodes to what the
// reference path (generated structs, full re-encode) sends.
func TestMergedSumWrittenInPlace(t *testing.T) {
	mergedRounds(t, mergedRun{}, func(t *testing.T, r mergedRound) {
		if n := nones(t, r.proto, r.raw); r.patched != n || n == 0 {
			t.Fatalf("%d merged outputs written in place, want one per None series (%d)", r.patched, n)
		}
		if r.moved != 0 || len(r.out) != len(r.raw) {
			t.Fatalf("%d series sent again, %d bytes for the sender's %d: want none, the same length", r.moved, len(r.out), len(r.raw))
		}
		if r.holes != 9*r.patched { // 8 value bytes of each sum, the tag of each None blanked
			t.Fatalf("%d bytes changed, want %d", r.holes, 9*r.patched)
		}
	})
}

// TestMergedSumOverAZeroGenuineBlankedInPlace: a genuine 500 whose value is
// +0 has no value bytes on the wire (senders leave a +0 out), so its sum
// with its None twin cannot be written in place. It is blanked and sent
// again after the others, and the rest of the request still keeps its
// bytes and its place (encodeForward blanks the request whole): it used to
// send the whole request through encodeCopy and compressSpliced, a third
// of the repair-heavy load row's CPU, because the slot keeps its own labels
// and was taken for a series whose samples were only trimmed.
func TestMergedSumOverAZeroGenuineBlankedInPlace(t *testing.T) {
	zeroed := 0
	mergedRounds(t, mergedRun{modify: func(rw2 bool, raw []byte) []byte {
		var out []byte
		zeroed, out = zeroGenuines(t, rw2, raw)
		return out
	}}, func(t *testing.T, r mergedRound) {
		n := nones(t, r.proto, r.raw)
		if zeroed == 0 || r.patched != n-zeroed || r.moved != zeroed {
			t.Fatalf("%d None series, %d genuine twins at +0: %d sums written in place, %d sent again; want %d and %d", n, zeroed, r.patched, r.moved, n-zeroed, zeroed)
		}
		if !r.whole {
			t.Fatal("the request was copied and cut, not blanked in place whole")
		}
	})
}

// TestHeldSampleWrittenInPlace: in the clean steady state each genuine 500
// is an output with one source, and the birth wait holds its sample at T
// until the next scrape's request, where it goes in the slot of the
// series' sample at T+15s. Its timestamp's varint is as long, so both the
// value and the timestamp are written into the slot's bytes: nothing is
// blanked and sent again after the request (which sent each 500 twice,
// 6% more bytes upstream), and the request keeps its length.
func TestHeldSampleWrittenInPlace(t *testing.T) {
	mergedRounds(t, mergedRun{clean: true, paced: true}, func(t *testing.T, r mergedRound) {
		n := genuines(t, r.proto, r.raw)
		if n == 0 || r.patched != n || r.moved != 0 || len(r.out) != len(r.raw) || !r.whole {
			t.Fatalf("%d genuine 500s: %d written in place, %d sent again, %d bytes for the sender's %d, blanked whole %v; want all in place, the same length", n, r.patched, r.moved, len(r.out), len(r.raw), r.whole)
		}
		// Each the sample before: value and timestamp changed.
		if held, now := maxStamp(t, r.proto, r.out, "500"), maxStamp(t, r.proto, r.raw, "500"); held != now-15_000 {
			t.Fatalf("the 500s went out at %d, the request's at %d: want the scrape before's", held, now)
		}
	})
}

// maxStamp is the latest timestamp of raw's series whose status is code.
func maxStamp(t *testing.T, proto string, raw []byte, code string) int64 {
	t.Helper()
	p, err := rwtest.ParseProto(proto)
	if err != nil {
		t.Fatal(err)
	}
	ss, err := wire.Decode(p, raw)
	if err != nil {
		t.Fatal(err)
	}
	last := int64(-1)
	for _, s := range ss {
		if s.Labels.Get("status_code") == code || s.Labels.Get("exception_status") == code {
			for _, smp := range s.Samples {
				last = max(last, smp.Timestamp)
			}
		}
	}
	return last
}

// mergedRound is what one round of mergedRounds encoded.
type mergedRound struct {
	proto                 string
	raw, out              []byte // the request as it came (after modify), as it goes
	patched, moved, holes int    // sums written in place, series sent again, bytes changed
	whole                 bool   // every change blanked in place (encodeForward's head)
}

// mergedRun says what mergedRounds runs; its zero value is the
// repair-heavy workload with litellmPipeline's clock.
type mergedRun struct {
	// clean: no None, only genuine 500s (each an output with one source).
	clean bool
	// paced: the merge's clock at a round is the workload's sample time
	// (15 s a round), as in production, not litellmPipeline's (3 minutes
	// on at every reading, so that nothing is held).
	paced bool
	// modify changes each request from the second round on (nil: none).
	modify func(rw2 bool, raw []byte) []byte
}

// mergedRounds runs rounds of a workload of 400 series (one request per
// round) through the handler's path, for both protocols; it fails unless
// each output decodes to what the reference path sends, and from the
// second round on (the first learns the outputs' sources) hands check what
// the encoder did.
func mergedRounds(t *testing.T, run mergedRun, check func(t *testing.T, r mergedRound)) {
	for _, rw2 := range []bool{false, true} {
		proto := string(protoFor(rw2))
		t.Run(protoLabel(proto), func(t *testing.T) {
			w := rwtest.Workload{Series: 400, BatchSize: 400, Rounds: 4, NoneRatio: 0.2, GenuineMore: true}
			if run.clean {
				w.NoneRatio, w.GenuineMore = 0, false
			}
			bodies, _ := w.RW1()
			if rw2 {
				bodies, _ = w.RW2()
			}
			fast, ref := litellmPipeline(t, ""), litellmPipeline(t, "")
			var now atomic.Int64 // the paced clock, ms
			if run.paced {
				w.Rounds = 6
				bodies, _ = w.RW1()
				if rw2 {
					bodies, _ = w.RW2()
				}
				clock := func() time.Time { return time.UnixMilli(now.Load()) }
				fast.SetMergeClock(clock)
				ref.SetMergeClock(clock)
			}
			modify := run.modify
			for round, body := range bodies {
				// The workload's sample time (rwtest: 15 s a round), a
				// second after its scrape; from the second round on,
				// max_wait later too: the outputs have learned their one
				// source.
				at := 1_700_000_000_000 + int64(round)*15_000 + 1_000
				if round > 0 {
					at += int64(relabel.DefaultMaxWait / time.Millisecond)
				}
				now.Store(at)
				raw, err := snappy.Decode(nil, body)
				if err != nil {
					t.Fatal(err)
				}
				if modify != nil && round > 0 {
					raw = modify(rw2, raw)
				}
				s, err := scan(protoFor(rw2), slices.Clone(raw))
				if err != nil {
					t.Fatal(err)
				}
				lim := DefaultLimits()
				if err := s.validate(&lim); err != nil {
					t.Fatal(err)
				}
				s.sortLabels()
				_, mr := applyRepair(s, fast, "")
				mr.done(true, allSamples(mr.retries()))
				s.blank = DefaultBlankShare
				blank, whole := s.blanking()
				head, tail := s.encodeForward(nil, blank, whole)
				r := mergedRound{proto: proto, raw: raw, out: slices.Concat(head, tail), moved: len(s.moved), holes: len(s.holes), whole: head != nil}
				for i := range s.edits {
					if s.edits[i].patch {
						r.patched++
					}
				}
				s.release()

				want, _ := runReference(t, ref, proto, raw)
				if g, w := rwtest.MustRender(t, proto, r.out), rwtest.MustRender(t, proto, want); g != w {
					t.Fatalf("round %d: in-place output differs from the reference:\n%s\nreference:\n%s", round, g, w)
				}
				if round > 0 {
					t.Run(fmt.Sprintf("round=%d", round), func(t *testing.T) { check(t, r) })
				}
			}
		})
	}
}

// zeroGenuines sets to +0 (left out on the wire, as senders leave it) the
// value of every third genuine 500 series of raw that has a None twin in
// it, and returns how many and the request encoded again.
func zeroGenuines(t *testing.T, rw2 bool, raw []byte) (int, []byte) {
	t.Helper()
	twinned := map[string]bool{}
	genuine := func(ls labels.Labels, mark bool) bool {
		for _, name := range []string{"status_code", "exception_status"} {
			switch ls.Get(name) {
			case "None":
				if mark {
					twinned[labels.NewBuilder(ls).Set(name, "500").Labels().String()] = true
				}
			case "500":
				return twinned[ls.String()]
			}
		}
		return false
	}
	n, k := 0, 0
	zero := func(ls labels.Labels, v *float64) {
		if genuine(ls, false) {
			if k++; k%3 == 1 {
				*v = 0
				n++
			}
		}
	}
	// each calls f with the labels and first sample value of every series.
	var (
		each    func(f func(ls labels.Labels, v *float64))
		marshal func() ([]byte, error)
		sb      labels.ScratchBuilder
	)
	if rw2 {
		var req writev2.Request
		if err := req.Unmarshal(raw); err != nil {
			t.Fatal(err)
		}
		each = func(f func(ls labels.Labels, v *float64)) {
			for i := range req.Timeseries {
				ts := &req.Timeseries[i]
				ls, err := ts.ToLabels(&sb, req.Symbols)
				if err != nil {
					t.Fatal(err)
				}
				f(ls, &ts.Samples[0].Value)
			}
		}
		marshal = req.Marshal
	} else {
		var req prompb.WriteRequest
		if err := req.Unmarshal(raw); err != nil {
			t.Fatal(err)
		}
		each = func(f func(ls labels.Labels, v *float64)) {
			for i := range req.Timeseries {
				ts := &req.Timeseries[i]
				sb.Reset()
				for _, l := range ts.Labels {
					sb.Add(l.Name, l.Value)
				}
				sb.Sort()
				f(sb.Labels(), &ts.Samples[0].Value)
			}
		}
		marshal = req.Marshal
	}
	each(func(ls labels.Labels, _ *float64) { genuine(ls, true) }) // the twins first
	each(zero)
	out, err := marshal()
	if err != nil {
		t.Fatal(err)
	}
	return n, out
}

// TestPatchableOnlyWhenOnlyValuesChange: a merged slot is written in place
// only when its labels, number of samples and exemplars stay what they are,
// and its timestamps too or each one as long on the wire (a held sample
// sent in the next scrape's slot); otherwise it is blanked and sent again
// after the others, as before. Each case decodes to the same series as the
// request cut and re-encoded.
func TestPatchableOnlyWhenOnlyValuesChange(t *testing.T) {
	for _, rw2 := range []bool{false, true} {
		raw := firstRequest(t, rwtest.Workload{Series: 200, Rounds: 1}, rw2)
		type mod func(s *scanned, i int, smp []series.Sample)
		cases := []struct {
			name  string
			patch bool
			mod   mod
		}{
			{"values only", true, func(s *scanned, i int, smp []series.Sample) {}},
			{"same labels given again", true, func(s *scanned, i int, smp []series.Sample) {
				var sb labels.ScratchBuilder
				s.SetLabels(i, s.Labels(i, &sb))
			}},
			{"other labels", false, func(s *scanned, i int, smp []series.Sample) {
				var sb labels.ScratchBuilder
				s.SetLabels(i, labels.NewBuilder(s.Labels(i, &sb)).Set("status_code", "500").Labels())
			}},
			{"the scrape before's timestamp", true, func(s *scanned, i int, smp []series.Sample) { smp[0].T -= 15_000 }},
			{"a timestamp longer on the wire", false, func(s *scanned, i int, smp []series.Sample) { smp[0].T = 1 << 50 }},
			{"a timestamp shorter on the wire", false, func(s *scanned, i int, smp []series.Sample) { smp[0].T = 1 }},
			{"a sample more", false, func(s *scanned, i int, smp []series.Sample) {
				more := append(slices.Clone(smp), series.Sample{T: smp[0].T + 1, V: 1})
				s.edits[i].samples = more
			}},
		}
		if rw2 {
			cases = append(cases, struct {
				name  string
				patch bool
				mod   mod
			}{"another start timestamp", false, func(s *scanned, i int, smp []series.Sample) { smp[0].ST++ }})
		}
		for _, c := range cases {
			t.Run(c.name+"/"+protoLabel(string(protoFor(rw2))), func(t *testing.T) {
				edited := 0
				s, out := encodedBothWays(t, raw, rw2, func(s *scanned) {
					edited = 0
					for i := range s.Len() {
						smp := slices.Clone(s.Samples(i))
						if i%10 != 4 || s.HasHistograms(i) || slices.ContainsFunc(smp, func(p series.Sample) bool { return p.V == 0 }) {
							continue // (a +0 value has no field on the wire to write into)
						}
						for k := range smp {
							smp[k].V = smp[k].V*3 + 1
						}
						s.SetSamples(i, smp, []int{i})
						c.mod(s, i, smp)
						edited++
					}
				})
				patched := 0
				for i := range s.edits {
					if s.edits[i].patch {
						patched++
					}
				}
				if c.patch {
					if patched != edited || edited == 0 || len(s.moved) != 0 || len(out) != len(raw) {
						t.Fatalf("%d of %d merged series written in place, %d sent again, %d bytes for %d: want all in place", patched, edited, len(s.moved), len(out), len(raw))
					}
					// Only value bytes changed (8 per sample), and the
					// timestamps' that differ; each recorded, in order.
					diff := 0
					for k := range raw {
						if raw[k] != out[k] {
							diff++
							if !slices.Contains(s.holes, k) {
								t.Fatalf("byte %d changed, not recorded as a hole", k)
							}
						}
					}
					if diff == 0 || !slices.IsSorted(s.holes) {
						t.Fatalf("%d bytes differ, %d recorded as changed, sorted: %v", diff, len(s.holes), slices.IsSorted(s.holes))
					}
					return
				}
				if patched != 0 {
					t.Fatalf("%d series written in place, but more than their values changed", patched)
				}
			})
		}
	}
}

// TestPatchableKeepsOtherSourcesExemplars: a merged output carries its
// sources' exemplars, so one whose other source has exemplars is not
// written in place (where only the slot's own would stay), and the request
// still decodes to the output with both sources' exemplars.
func TestPatchableKeepsOtherSourcesExemplars(t *testing.T) {
	for _, withExemplar := range []bool{false, true} {
		req := &prompb.WriteRequest{}
		for k, code := range []string{"500", "None"} {
			ls := labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_total", "status_code", code, "user", "u")
			ts := prompb.TimeSeries{Labels: prompb.FromLabels(ls, nil), Samples: []prompb.Sample{{Value: float64(3 + k), Timestamp: 15000}}}
			if k == 1 && withExemplar {
				ts.Exemplars = []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: "t1"}}, Value: 1, Timestamp: 15000}}
			}
			req.Timeseries = append(req.Timeseries, ts)
		}
		raw, err := req.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		s, err := scan(ProtoV1, raw)
		if err != nil {
			t.Fatal(err)
		}
		s.SetSamples(0, []series.Sample{{T: 15000, V: 7}}, []int{0, 1})
		s.Drop(1)
		if got := s.patchable(0, false); got == withExemplar {
			t.Fatalf("other source with exemplars %v: patchable %v", withExemplar, got)
		}
		s.release()
	}
}

// nones counts the series of raw with a None status.
func nones(t *testing.T, proto string, raw []byte) int { return withStatus(t, proto, raw, "None") }

// genuines counts the series of raw with a 500 status.
func genuines(t *testing.T, proto string, raw []byte) int { return withStatus(t, proto, raw, "500") }

// withStatus counts the series of raw whose status_code or exception_status
// is code.
func withStatus(t *testing.T, proto string, raw []byte, code string) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(rwtest.MustRender(t, proto, raw), "\n") {
		if strings.Contains(line, `status_code="`+code+`"`) || strings.Contains(line, `exception_status="`+code+`"`) {
			n++
		}
	}
	return n
}

// TestPatchableCountsInMixedBlankShare: blanking leaves the series it writes
// in place (patchable) out of the blanked share, but when one other change
// can be neither patched nor blanked (a series whose samples were only
// trimmed: a fence, the backlog split), encode copies the request field by
// field (encodeCopy), which blanks those series and sends them again like
// any relabeled one. What it blanks must then stay within the share
// (--upstream.max-blanked-share), and the request still decodes to the one
// cut and re-encoded.
func TestPatchableCountsInMixedBlankShare(t *testing.T) {
	for _, rw2 := range []bool{false, true} {
		t.Run(protoLabel(string(protoFor(rw2))), func(t *testing.T) {
			raw := firstRequest(t, rwtest.Workload{Series: 200, Rounds: 1}, rw2)
			s, _ := encodedBothWays(t, raw, rw2, func(s *scanned) {
				var sb labels.ScratchBuilder
				trimmed := false
				for i := range s.Len() {
					smp := slices.Clone(s.Samples(i))
					if s.HasHistograms(i) || len(smp) == 0 || slices.ContainsFunc(smp, func(p series.Sample) bool { return p.V == 0 }) {
						continue
					}
					if i%2 == 1 {
						if !trimmed {
							// A sample more, its labels its own: neither
							// written in place nor blanked (re-encoded in its
							// place).
							smp = append(smp, series.Sample{T: smp[len(smp)-1].T + 1, V: 1})
							s.SetSamples(i, smp, []int{i})
							trimmed = true
						}
						continue
					}
					// A merged output in its genuine series' slot, only its
					// values new (as relabel's writeEmits sets it).
					for k := range smp {
						smp[k].V = smp[k].V*3 + 1
					}
					s.SetLabels(i, s.Labels(i, &sb))
					s.SetSamples(i, smp, []int{i})
				}
			})
			if limit := DefaultBlankShare * float64(len(raw)); float64(s.blanked) > limit {
				t.Fatalf("blanked %d bytes of a %d-byte request: more than the share allows (%.0f)", s.blanked, len(raw), limit)
			}
		})
	}
}

// encodedBothWays scans raw twice, applies edits to each, and encodes one
// with the changed series cut out (blank share 0) and one blanked (the
// handler's default share); it fails unless both decode to the same series,
// and returns the blanked one and its scan (released when the test ends).
func encodedBothWays(t *testing.T, raw []byte, rw2 bool, edits func(s *scanned)) (*scanned, []byte) {
	t.Helper()
	enc := func(blank float64) (*scanned, []byte) {
		s, err := scan(protoFor(rw2), slices.Clone(raw))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.release)
		edits(s)
		s.blank = blank
		return s, s.encode(nil)
	}
	_, want := enc(0)
	s, out := enc(DefaultBlankShare)
	proto := string(protoFor(rw2))
	if got, w := rwtest.MustRender(t, proto, out), rwtest.MustRender(t, proto, want); got != w {
		t.Fatalf("blanked, decodes to\n%s\nwant (cut out)\n%s", got, w)
	}
	return s, out
}
