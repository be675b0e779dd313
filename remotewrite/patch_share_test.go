package remotewrite

import (
	"slices"
	"testing"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/rwfix/rwfix/remotewrite/rwtest"
	"github.com/rwfix/rwfix/remotewrite/series"
)

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
			edit := func(blank float64) (*scanned, []byte) {
				s, err := scan(protoFor(rw2), slices.Clone(raw))
				if err != nil {
					t.Fatal(err)
				}
				var sb labels.ScratchBuilder
				trimmed := false
				for i := range s.Len() {
					smp := slices.Clone(s.Samples(i))
					if s.HasHistograms(i) || len(smp) == 0 || slices.ContainsFunc(smp, func(p series.Sample) bool { return p.V == 0 }) {
						continue
					}
					if i%2 == 1 {
						if !trimmed {
							// Another timestamp, its labels its own: neither
							// written in place nor blanked (re-encoded in its
							// place).
							smp[0].T--
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
				s.blank = blank
				return s, s.encode(nil)
			}
			cut, want := edit(0)
			defer cut.release()
			s, out := edit(DefaultBlankShare)
			defer s.release()
			if got, want := rwtest.MustRender(t, string(protoFor(rw2)), out), rwtest.MustRender(t, string(protoFor(rw2)), want); got != want {
				t.Fatalf("decodes to\n%s\nwant\n%s", got, want)
			}
			if limit := DefaultBlankShare * float64(len(raw)); float64(s.blanked) > limit {
				t.Fatalf("blanked %d bytes of a %d-byte request: more than the share allows (%.0f)", s.blanked, len(raw), limit)
			}
		})
	}
}
