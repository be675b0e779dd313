package remotewrite

import (
	"testing"
)

// FuzzScan: any bytes, either protocol. The scanner must not panic; what it
// accepts must repair, encode, and scan again.
func FuzzScan(f *testing.F) {
	v1, v2 := fixtureSeeds(f)
	for _, b := range v1 {
		f.Add(false, b)
	}
	for _, b := range v2 {
		f.Add(true, b)
	}
	f.Fuzz(func(t *testing.T, rw2 bool, raw []byte) {
		proto := protoFor(rw2)
		s, err := scan(proto, raw)
		if err != nil {
			return
		}
		defer s.release()
		lim := DefaultLimits()
		if s.validate(&lim) != nil {
			return
		}
		p := litellmPipeline(t, "collision: {policy: merge}")
		_, mr := applyRepair(s, p, "")
		defer mr.done(true, allSamples(mr.retries()))
		if !s.changed() {
			return
		}
		out := s.encode(nil)
		s2, err := scan(proto, out)
		if err != nil {
			t.Fatalf("the re-encoded request does not scan: %v", err)
		}
		s2.release()
	})
}
