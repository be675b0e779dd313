package remotewrite

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestSymbolIndex checks symbol against a map of first references, over
// random tables with repeated strings, strings added past the table's first
// size (so that it grows), and one scanned state reused between requests.
func TestSymbolIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := &scanned{}
	for round := range 200 {
		s.reset()
		nSyms := rng.IntN(300)
		var raw []byte
		want := map[string]uint32{}
		for j := range nSyms {
			str := fmt.Sprintf("s%d", rng.IntN(nSyms+1))
			if j == 0 {
				str = "" // RW 2.0's first symbol
			}
			off := uint32(len(raw))
			raw = append(raw, str...)
			s.syms = append(s.syms, span{off: off, end: uint32(len(raw))})
			if _, ok := want[str]; !ok {
				want[str] = uint32(j)
			}
		}
		s.raw = raw
		for range rng.IntN(400) {
			str := fmt.Sprintf("s%d", rng.IntN(2*nSyms+200)) // half new
			r := s.symbol(str)
			w, ok := want[str]
			if !ok {
				w = uint32(len(s.syms) + len(s.newSyms) - 1)
				if got := s.newSyms[len(s.newSyms)-1]; got != str {
					t.Fatalf("round %d: %q added as %q", round, str, got)
				}
				want[str] = w
			}
			if r != w {
				t.Fatalf("round %d: symbol(%q) = %d, want %d", round, str, r, w)
			}
			if got := s.symStr(r); got != str {
				t.Fatalf("round %d: reference %d is %q, want %q", round, r, got, str)
			}
		}
		if t.Failed() {
			return
		}
	}
}
