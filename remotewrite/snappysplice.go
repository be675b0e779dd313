package remotewrite

import (
	"encoding/binary"
	"errors"
)

// Compressing a repaired request by reusing the sender's compressed bytes.
//
// A snappy block is a length header and a sequence of elements: literals,
// and copies of bytes already decoded, named by how far back they start (an
// offset relative to the copy's own position). golang/snappy — Prometheus'
// encoder (util/compression) — compresses each 64 KiB of its input on its
// own: the elements of one such window decode to exactly its 64 KiB and copy
// only from within it. Such a window decodes the same wherever it lands in a
// block, since the format asks no alignment of elements, only that a copy's
// offset be at least 1 and at most the bytes decoded so far (google/snappy's
// format_description.txt, section 2; golang/snappy's and s2's decoders check
// exactly that). So when encode spliced a repaired request, every window of
// the sender's request that the output holds unchanged — possibly at another
// position, after a change of length before it — is copied as its compressed
// elements, and only the bytes between such windows are compressed anew.
//
// Whether the sender's encoder windows is not assumed: the walk over its
// elements checks every window up to the last one reused (no element
// crosses a window boundary, no copy reaches before its window's start or
// has offset 0; a walk to the end, that the elements decode to the length
// the header gives) and compressSpliced falls back to compress when any
// check fails. s2's encoder, for one, matches across the
// whole block (and its S2 format has a repeat code, offset 0, that snappy
// decoders refuse).

// snappyWindow is golang/snappy's block size (its maxBlockSize): the unit
// its Encode compresses on its own.
const snappyWindow = 64 << 10

// The walk's verdicts: the block is valid snappy (or not), but its windows
// cannot be reused.
var (
	errSnappyHeader   = errors.New("snappy: bad length header")
	errSnappyTrunc    = errors.New("snappy: element truncated")
	errSnappyLength   = errors.New("snappy: elements decode to another length than the header's")
	errSnappyStraddle = errors.New("snappy: element crosses a 64 KiB window boundary")
	errSnappyReach    = errors.New("snappy: copy reaches before its window's start (or has offset 0)")
)

// snappyWindows walks the elements of the snappy block src, checking that
// each 64 KiB window of the decoded bytes is self-contained (see above), and
// appends to bounds[:0] where each window starts in src: window k's elements
// are src[bounds[k]:bounds[k+1]], and the last entry is len(src). It stops
// after limit windows (then bounds has limit+1 entries); a walk to the end
// checks that the elements decode to the length the header gives, which it
// returns. It reads src only: a bad block is an error, never a panic.
func snappyWindows(bounds []uint32, src []byte, limit int) (_ []uint32, total int, _ error) {
	n, s := binary.Uvarint(src)
	if s <= 0 || n > 1<<32-1 || len(src) > 1<<32-1 {
		return bounds, 0, errSnappyHeader
	}
	total = int(n)
	bounds = append(bounds[:0], uint32(s))
	d, wStart, wEnd := 0, 0, min(snappyWindow, total)
	for s < len(src) {
		tag := src[s]
		var length, offset int
		switch tag & 3 {
		case 0: // literal: length-1 in the tag, or in the 1-4 bytes after it
			x := int(tag >> 2)
			s++
			if x >= 60 {
				nb := x - 59
				if nb > len(src)-s {
					return bounds, total, errSnappyTrunc
				}
				x = 0
				for i := range nb {
					x |= int(src[s+i]) << (8 * i)
				}
				s += nb
			}
			length = x + 1
			if length > len(src)-s {
				return bounds, total, errSnappyTrunc
			}
			s += length
		case 1: // copy, 11-bit offset, length 4-11
			if 2 > len(src)-s {
				return bounds, total, errSnappyTrunc
			}
			length, offset = 4+int(tag>>2&7), int(tag&0xe0)<<3|int(src[s+1])
			s += 2
		case 2: // copy, 16-bit offset, length 1-64
			if 3 > len(src)-s {
				return bounds, total, errSnappyTrunc
			}
			length, offset = 1+int(tag>>2), int(binary.LittleEndian.Uint16(src[s+1:]))
			s += 3
		case 3: // copy, 32-bit offset, length 1-64
			if 5 > len(src)-s {
				return bounds, total, errSnappyTrunc
			}
			length, offset = 1+int(tag>>2), int(binary.LittleEndian.Uint32(src[s+1:]))
			s += 5
		}
		if length > wEnd-d {
			if length > total-d {
				return bounds, total, errSnappyLength
			}
			return bounds, total, errSnappyStraddle
		}
		if tag&3 != 0 && (offset == 0 || offset > d-wStart) {
			return bounds, total, errSnappyReach
		}
		d += length
		if d == wEnd {
			bounds = append(bounds, uint32(s))
			if len(bounds) > limit && wEnd < total {
				return bounds, total, nil
			}
			wStart, wEnd = wEnd, min(wEnd+snappyWindow, total)
		}
	}
	if d != total {
		return bounds, total, errSnappyLength
	}
	return bounds, total, nil
}

// reusedWindow is a window of the request (window k of raw) that the output
// holds unchanged, at offset out.
type reusedWindow struct{ k, out int }

// reusableWindows returns the windows of s.raw that the last encode copied
// whole, in order (and so at increasing offsets of its output).
func (s *scanned) reusableWindows() []reusedWindow {
	reuse := s.reuse[:0]
	j := 0
	for k := 0; k*snappyWindow < len(s.raw); k++ {
		a, b := k*snappyWindow, min((k+1)*snappyWindow, len(s.raw))
		// Runs are in raw's order and disjoint: one that ends before b
		// covers neither this window nor a later one.
		for j < len(s.kept) && int(s.kept[j].raw+s.kept[j].n) < b {
			j++
		}
		if j == len(s.kept) {
			break
		}
		if r := s.kept[j]; int(r.raw) <= a {
			reuse = append(reuse, reusedWindow{k: k, out: int(r.out) + a - int(r.raw)})
		}
	}
	s.reuse = reuse
	return reuse
}

// worthWalking returns how many windows of the sender's block to walk to
// reuse these, or 0 when reusing them would not pay. Walking a window's
// elements costs about 30% of what compressing it does (a profile of
// BenchmarkSnappySplice: 9 against 31 µs per 64 KiB), and a third of the
// windows walked reused measured no gain (the gaps compress in pieces): at
// least half must be.
func worthWalking(reuse []reusedWindow) int {
	if len(reuse) == 0 {
		return 0
	}
	if walk := reuse[len(reuse)-1].k + 1; 2*len(reuse) >= walk {
		return walk
	}
	return 0
}

// compressSpliced is compress(dst, out) for out, what the last encode of s
// appended (from its start), given in, the snappy block s.raw was decoded
// from: the windows of in that out holds unchanged are copied as they are
// compressed, the rest of out is compressed. The result decodes to out (one
// snappy block, for any snappy decoder); it is compress' own when no window
// can be reused: none is unchanged, or in's encoder does not window (see
// snappyWindows), or too few are to pay for the walk. It also returns how
// many windows it reused.
func (s *scanned) compressSpliced(dst, in, out []byte) ([]byte, int) {
	reuse := s.reusableWindows()
	walk := worthWalking(reuse)
	if walk == 0 {
		return compress(dst, out), 0
	}
	bounds, total, err := snappyWindows(s.bounds, in, walk)
	s.bounds = bounds
	if err != nil || total != len(s.raw) || len(bounds) != walk+1 {
		return compress(dst, out), 0
	}
	dst = binary.AppendUvarint(dst[:0], uint64(len(out)))
	pos := 0
	for _, w := range reuse {
		dst = appendSnappyElements(dst, out[pos:w.out])
		dst = append(dst, in[bounds[w.k]:bounds[w.k+1]]...)
		pos = w.out + min(snappyWindow, len(s.raw)-w.k*snappyWindow)
	}
	return appendSnappyElements(dst, out[pos:]), len(reuse)
}
