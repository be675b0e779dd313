package remotewrite

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// Tests of the fast paths of scanning and encoding: the symbols table
// (symtable.go) and inline references.

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

// TestAppendRefs reads packed references of every width (the one- and two-byte
// ones have a path of their own), and refuses truncated or too large ones.
func TestAppendRefs(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		var want []uint32
		var b []byte
		for range rng.IntN(40) {
			v := uint32(rng.Uint64() >> (rng.IntN(5)*7 + 29)) // 1 to 5 bytes
			want = append(want, v)
			b = protowire.AppendVarint(b, uint64(v))
		}
		got, maxRef, err := appendRefs(nil, b, protowire.BytesType, span{0, uint32(len(b))})
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("appendRefs(%x) = %v, %v; want %v", b, got, err, want)
		}
		if len(want) > 0 && maxRef != uint64(slices.Max(want)) {
			t.Fatalf("appendRefs(%x): max %d, want %d", b, maxRef, slices.Max(want))
		}
		if len(b) > 0 && b[len(b)-1] < 0x80 {
			b[len(b)-1] |= 0x80 // the last varint cut short
			if _, _, err := appendRefs(nil, b, protowire.BytesType, span{0, uint32(len(b))}); err == nil {
				t.Fatalf("appendRefs(%x) took a truncated reference", b)
			}
		}
	}
	big := protowire.AppendVarint(nil, 1<<32)
	if _, _, err := appendRefs(nil, big, protowire.BytesType, span{0, uint32(len(big))}); err == nil {
		t.Fatal("appendRefs took a reference above 2^32-1")
	}
}

// TestScanV2RefsOutsideTable checks that scanV2 refuses a reference outside
// the symbols table in each place a series holds one: its labels, its
// exemplars' labels, its metadata's help and unit.
func TestScanV2RefsOutsideTable(t *testing.T) {
	str := func(b []byte, num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), v)
	}
	vint := func(b []byte, num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), v)
	}
	sample := vint(nil, sampleTimestamp, 5)
	for _, tc := range []struct {
		name   string
		series func(bad uint64) []byte // a series with one reference bad
	}{
		{"labels", func(bad uint64) []byte {
			return str(str(nil, v2SeriesRefs, []byte{1, byte(bad)}), v2SeriesSamples, sample)
		}},
		{"exemplar", func(bad uint64) []byte {
			ex := vint(str(nil, v2ExemplarRefs, []byte{1, byte(bad)}), 3, 5)
			return str(str(str(nil, v2SeriesRefs, []byte{1, 2}), v2SeriesSamples, sample), v2SeriesExemplars, ex)
		}},
		{"help", func(bad uint64) []byte {
			md := vint(vint(vint(nil, 1, 1), v2MetadataHelpRef, bad), v2MetadataUnitRef, 2)
			return str(str(str(nil, v2SeriesRefs, []byte{1, 2}), v2SeriesSamples, sample), v2SeriesMetadata, md)
		}},
		{"unit", func(bad uint64) []byte {
			md := vint(vint(vint(nil, 1, 1), v2MetadataHelpRef, 2), v2MetadataUnitRef, bad)
			return str(str(str(nil, v2SeriesRefs, []byte{1, 2}), v2SeriesSamples, sample), v2SeriesMetadata, md)
		}},
	} {
		for _, bad := range []uint64{2, 3, 100} {
			var req []byte
			for _, sym := range []string{"", "__name__", "m"} {
				req = str(req, v2ReqSymbols, []byte(sym))
			}
			req = str(req, v2ReqSeries, tc.series(bad))
			s, err := scan(ProtoV2, req)
			if bad < 3 {
				if err != nil {
					t.Errorf("%s: reference %d in the table: %v", tc.name, bad, err)
				} else {
					s.release()
				}
			} else if err == nil {
				s.release()
				t.Errorf("%s: reference %d outside the table (size 3) taken", tc.name, bad)
			}
		}
	}
}
