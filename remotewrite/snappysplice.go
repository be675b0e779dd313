package remotewrite

import (
	"encoding/binary"
)

// Compressing a repaired request by editing the sender's compressed block.
//
// A snappy block is a length header and a sequence of elements: literals,
// and copies of bytes already decoded, named by how far back they start (an
// offset relative to the copy's own position; google/snappy's
// format_description.txt). The repaired request (encode's output, out) is
// made of runs of the sender's request copied as they came (s.kept) and new
// bytes between them (re-encoded series, merged outputs, RW 2.0 symbols).
// compressSpliced walks the sender's elements once, knowing for each the
// bytes of the request it decodes to, and for each element inside a kept
// run:
//
//   - a literal, or a copy whose source lies in bytes kept and moved by as
//     much as this run (the same run, or earlier runs with no change of
//     length between: the distance back is unchanged), decodes to the same
//     bytes at the run's new place: its compressed bytes are copied as they
//     came, consecutive ones in one append (a bitmap of the bytes no run
//     holds tells whether a source is whole);
//   - a copy whose source lies wholly in an earlier run that moved by
//     another amount is written again with the distance between the two
//     places in out;
//   - any other element (its source cut by an edit, or the element cut by a
//     run's end) leaves its bytes to be compressed anew, with the new bytes
//     between runs.
//
// So only the bytes around edits are compressed, whatever snappy encoder
// the sender used (golang/snappy, Prometheus', compresses each 64 KiB on
// its own; s2 and rwfix match across more; copies are handled alike). The
// walk checks each element against the block (no element past its end, no
// copy with offset 0 or reaching before the block's start — s2's own format
// uses offset 0 for repeats, which snappy decoders refuse) and falls back to
// compressing out in full when one fails or the header does not give the
// request's length.
//
// encode makes the edits of the common case keep the request's length: a
// merged output sent in its own slot keeps its label bytes as they came
// (encodeSeries), and a sample's +0 value is left out as the senders leave
// it out, so a genuine 500 sent with the sample it held from the scrape
// before is the same length as the one it replaces, and its neighbours'
// copies reach across it unchanged. When the request is blanked whole
// (compressInPlace), such a series is not even re-encoded: its value and
// timestamp are written into its own bytes (patchable).
//
// What it costs: a copied element about 3 ns (44,000 elements in a
// 2,000-sample request: 0.15 ms), one handled on its own about 20 times as
// much; compressing the whole request about 0.45 ms (BenchmarkSnappySplice).
// So the walk is skipped when runs move against each other often (repairs
// that change lengths in many places: most copies would need pointing
// again), and given up for compressing the rest when too many elements
// need handling one by one (see spliceWindow).

// snappyElem is one element of a snappy block: its kind, how many bytes it
// decodes to, and for a copy how far back its source starts.
type snappyElem struct {
	copy           bool
	length, offset int
}

// nextSnappyElem parses the element of src at s and returns it and where the
// next one starts; ok is false when it is truncated or is not snappy (a copy
// with offset 0).
func nextSnappyElem(src []byte, s int) (e snappyElem, next int, ok bool) {
	tag := src[s]
	switch tag & 3 {
	case 0: // literal: length-1 in the tag, or in the 1-4 bytes after it
		x := int(tag >> 2)
		s++
		if x >= 60 {
			nb := x - 59
			if nb > len(src)-s {
				return e, s, false
			}
			x = 0
			for i := range nb {
				x |= int(src[s+i]) << (8 * i)
			}
			s += nb
		}
		e.length = x + 1
		if e.length > len(src)-s || e.length <= 0 {
			return e, s, false
		}
		return e, s + e.length, true
	case 1: // copy, 11-bit offset, length 4-11
		if 2 > len(src)-s {
			return e, s, false
		}
		e.length, e.offset = 4+int(tag>>2&7), int(tag&0xe0)<<3|int(src[s+1])
		s += 2
	case 2: // copy, 16-bit offset, length 1-64
		if 3 > len(src)-s {
			return e, s, false
		}
		e.length, e.offset = 1+int(tag>>2), int(binary.LittleEndian.Uint16(src[s+1:]))
		s += 3
	default: // copy, 32-bit offset, length 1-64
		if 5 > len(src)-s {
			return e, s, false
		}
		e.length, e.offset = 1+int(tag>>2), int(binary.LittleEndian.Uint32(src[s+1:]))
		s += 5
	}
	e.copy = true
	return e, s, e.offset > 0
}

// appendSnappyCopy appends copy elements that repeat length bytes from
// offset back (length ≥ 4, offset ≥ 1), as snappy encoders write them.
func appendSnappyCopy(dst []byte, offset, length int) []byte {
	for length > 0 {
		n := min(length, 64)
		if length > 64 && length-64 < 4 {
			n = 60 // leave at least 4 for the last element
		}
		switch {
		case offset < 2048 && n >= 4 && n <= 11:
			dst = append(dst, byte(offset>>8)<<5|byte(n-4)<<2|1, byte(offset))
		case offset < 1<<16:
			dst = append(dst, byte(n-1)<<2|2, byte(offset), byte(offset>>8))
		default:
			dst = append(dst, byte(n-1)<<2|3, byte(offset), byte(offset>>8), byte(offset>>16), byte(offset>>24))
		}
		length -= n
	}
	return dst
}

// appendSnappyLiteral appends lit as one literal element.
func appendSnappyLiteral(dst, lit []byte) []byte {
	n := len(lit) - 1
	switch {
	case n < 60:
		dst = append(dst, byte(n)<<2)
	case n < 1<<8:
		dst = append(dst, 60<<2, byte(n))
	case n < 1<<16:
		dst = append(dst, 61<<2, byte(n), byte(n>>8))
	case n < 1<<24:
		dst = append(dst, 62<<2, byte(n), byte(n>>8), byte(n>>16))
	default:
		dst = append(dst, 63<<2, byte(n), byte(n>>8), byte(n>>16), byte(n>>24))
	}
	return append(dst, lit...)
}

// spliceCompressMin is the pending stretch from which compressSpliced
// compresses new bytes instead of writing them as a literal: below it a
// literal costs a byte or three more than a match would save, and
// compressing costs a table.
const spliceCompressMin = 256

// An element handled one by one (a copy pointed again, bytes compressed
// anew) costs about 20 times what one copied in a stretch does, and about
// 6 times what compressing its bytes would (BenchmarkSnappySplice): the walk
// pays while fewer than about one element in ten is. compressSpliced counts
// them per spliceWindow bytes of the sender's block (about 3,000 elements)
// and compresses the rest of the request when they are more than one per
// spliceSlowShare bytes (elements average about 5 bytes here).

// Before walking, a request whose kept runs move against each other (bytes
// removed or added between them) more than once per spliceMoveSpan bytes is
// compressed at once. Each such edit leaves the copies of the next series
// that took their bytes from the edited one without a source, and with the
// genuine 500s held out of every clean request (one series in 16) that is
// more elements handled one by one than the walk saves: BenchmarkSnappySplice's
// held=6% gave the walk up after its first window, at 1.01-1.06 times the
// cost of compressing. A few relabels in a request (0.5%) walk.
const (
	spliceWindow    = 16 << 10
	spliceSlowShare = 48
	spliceMoveSpan  = 32 << 10
)

// splicer writes the output block of compressSpliced: dst so far decodes to
// out[:done]; the sender's elements in[vs:vEnd] are to be appended as they
// came, next, when vs >= 0.
type splicer struct {
	dst, out, in []byte
	done         int
	vs, vEnd     int
	// patches: copies among in[vs:vEnd] whose source moved by another
	// amount than they did, to be written with a new offset of the same size.
	patches []snappyPatch
}

// snappyPatch is a copy element at in[at] to write with offset off.
type snappyPatch struct{ at, off int }

// flushVerbatim appends the sender's elements held back, with their patches.
func (w *splicer) flushVerbatim() {
	if w.vs < 0 {
		return
	}
	base := len(w.dst) - w.vs
	w.dst = append(w.dst, w.in[w.vs:w.vEnd]...)
	for _, pt := range w.patches {
		e := w.dst[base+pt.at:]
		switch e[0] & 3 {
		case 1:
			e[0], e[1] = e[0]&0x1f|byte(pt.off>>8)<<5, byte(pt.off)
		case 2:
			binary.LittleEndian.PutUint16(e[1:], uint16(pt.off))
		default:
			binary.LittleEndian.PutUint32(e[1:], uint32(pt.off))
		}
	}
	w.patches, w.vs = w.patches[:0], -1
}

// upTo brings dst up to out[:pos]: the verbatim elements held back, then
// out[done:pos], compressed or as a literal.
func (w *splicer) upTo(pos int) {
	w.flushVerbatim()
	if pos <= w.done {
		return
	}
	if pos-w.done >= spliceCompressMin {
		w.dst = appendSnappyElements(w.dst, w.out[w.done:pos])
	} else {
		w.dst = appendSnappyLiteral(w.dst, w.out[w.done:pos])
	}
	w.done = pos
}

// worthSplicing reports whether compressSpliced should walk the sender's
// block for an output of n bytes: most of it is kept runs, and they seldom
// move against each other (see spliceMoveSpan).
func (s *scanned) worthSplicing(n int) bool {
	kept, moves := 0, 0
	for k, r := range s.kept {
		kept += int(r.n)
		if k > 0 && int(r.out)-int(r.raw) != int(s.kept[k-1].out)-int(s.kept[k-1].raw) {
			moves++
		}
	}
	return kept > 0 && 2*kept >= n && (moves <= 2 || moves*spliceMoveSpan <= n)
}

// compressSpliced is compress(dst, out) for out, what the last encode of s
// appended (from its start), given in, the snappy block s.raw was decoded
// from: the sender's elements inside runs that out holds unchanged are
// reused (see above). The result decodes to out (one snappy block, for any
// snappy decoder); it is compress' own when in is not worth walking (see
// worthSplicing) or cannot be walked. It also returns how many
// bytes of out the reused elements decode to.
func (s *scanned) compressSpliced(dst, in, out []byte) ([]byte, int) {
	if s.inPlace && len(out) >= len(s.raw) {
		if len(s.bits) < len(s.raw)/64+2 {
			s.bits = make([]uint64, len(s.raw)/64+2)
		}
		if r, ok := compressInPlace(dst, in, out[:len(s.raw)], out[len(s.raw):], s.holes, s.bits); ok {
			return r, len(s.raw) - len(s.holes)
		}
	}
	if !s.worthSplicing(len(out)) {
		return compress(dst, out), 0
	}
	n, hdr := binary.Uvarint(in)
	if hdr <= 0 || n != uint64(len(s.raw)) {
		return compress(dst, out), 0
	}
	w := splicer{dst: binary.AppendUvarint(dst[:0], uint64(len(out))), out: out, in: in, vs: -1}
	reused := 0
	runs := s.kept
	j := 0
	window, slow := hdr, 0 // elements handled one by one since window
	for d, p := 0, hdr; p < len(in) && j < len(runs); {
		rStart, rEnd := int(runs[j].raw), int(runs[j].raw+runs[j].n)
		if d >= rEnd {
			j++
			continue
		}
		if d >= rStart {
			// The common case, kept tight: the elements from here that lie
			// wholly in run j and are literals or copies from bytes kept
			// whole in one run, one stretch of the sender's bytes.
			p0, d0, at := p, d, int(runs[j].out)+d-rStart
			continues := w.vs >= 0 && w.vEnd == p0 && w.done == at
			if !continues {
				w.flushVerbatim() // its patches, before this stretch's
			}
			d, p, w.patches = verbatimStretch(in, p, d, runs, j, w.patches)
			if p > p0 {
				if !continues {
					w.upTo(at) // the pending bytes before it
					w.vs = p0
				}
				w.vEnd, w.done = p, at+d-d0
				reused += d - d0
				continue
			}
		}
		if slow++; p-window >= spliceWindow {
			if slow*spliceSlowShare > p-window {
				// Too many elements to handle one by one: compressing the
				// rest costs less.
				break
			}
			window, slow = p, 0
		}
		e, next, ok := nextSnappyElem(in, p)
		if !ok || e.length > len(s.raw)-d || (e.copy && e.offset > d) {
			return compress(dst, out), 0
		}
		end := d + e.length
		// The element's bytes in each run it overlaps (runs are disjoint and
		// in order, in raw and in out), from run j: it starts before run j,
		// or ends after it, or copies from before it.
		for k := j; k < len(runs) && int(runs[k].raw) < end; k++ {
			r := runs[k]
			x, y := max(d, int(r.raw)), min(end, int(r.raw+r.n))
			if !e.copy || y-x < 4 {
				continue // its bytes stay pending, compressed with the next new bytes
			}
			src := x - e.offset
			if q := runAt(runs[:k+1], src); q >= 0 && src+y-x <= int(runs[q].raw+runs[q].n) {
				// A copy from one run (this one, when cut by its end; or an
				// earlier one): written again with the distance between the
				// two places in out.
				at := int(r.out) + x - int(r.raw)
				from := int(runs[q].out) + src - int(runs[q].raw)
				w.upTo(at)
				w.dst = appendSnappyCopy(w.dst, at-from, y-x)
				w.done = at + y - x
				reused += y - x
			}
		}
		d, p = end, next
	}
	w.upTo(len(out))
	return w.dst, reused
}

// verbatimStretch walks the elements of src from s, at d of the decoded
// bytes, while each lies wholly in run j and is a literal or a copy from
// bytes wholly in one run: from run j, or from an earlier one — moved by as
// much as run j (the same offset), or by another amount, when the offset it
// needs has the copy's size (a later run moves closer when bytes between
// are removed: its copies' offsets only shrink); for those it appends a
// patch. It returns where it stopped. It stops, too, at any element it
// cannot parse, which the caller's careful parse then refuses.
func verbatimStretch(src []byte, s, d int, runs []keptSpan, j int, patches []snappyPatch) (int, int, []snappyPatch) {
	lo, hi := int(runs[j].raw), int(runs[j].raw+runs[j].n)
	delta := int(runs[j].out) - lo
	q := j - 1            // the run of the last source before run j: sources are near each other
	for s+5 <= len(src) { // the tag and the 4 bytes after it are there
		tag, b := src[s], src[s+1:s+5:s+5]
		var length, off, next, limit int
		switch tag & 3 {
		case 0:
			x := int(tag >> 2)
			next = s + 1
			if x >= 60 { // the length in the 1-4 bytes after the tag
				nb := x - 59
				x = int(binary.LittleEndian.Uint32(b) & (1<<(8*nb) - 1))
				next += nb
			}
			length = x + 1
			if length > hi-d || length > len(src)-next {
				return d, s, patches
			}
			d, s = d+length, next+length
			continue
		case 1:
			length, off, next, limit = 4+int(tag>>2&7), int(tag&0xe0)<<3|int(b[0]), s+2, 1<<11
		case 2:
			length, off, next, limit = 1+int(tag>>2), int(b[0])|int(b[1])<<8, s+3, 1<<16
		default:
			length, off, next, limit = 1+int(tag>>2), int(binary.LittleEndian.Uint32(b)), s+5, 1<<31-1 // (int on 32-bit machines: a request is far smaller)
		}
		if length > hi-d || off == 0 || off > d {
			return d, s, patches
		}
		if from := d - off; from < lo {
			if q < 0 || from < int(runs[q].raw) || from >= int(runs[q].raw+runs[q].n) {
				q = runAt(runs[:j], from) // a search, not a walk across the runs (a hostile block alternates)
			}
			if q < 0 || from+length > int(runs[q].raw+runs[q].n) {
				return d, s, patches // its source is not kept whole in one run
			}
			if dq := int(runs[q].out) - int(runs[q].raw); dq != delta {
				noff := off + delta - dq
				if noff < 1 || noff >= limit {
					return d, s, patches
				}
				patches = append(patches, snappyPatch{at: s, off: noff})
			}
		}
		d, s = d+length, next
	}
	return d, s, patches // the last elements, by the caller's careful parse
}

// runAt returns the index of the run holding byte pos of the request, or -1.
func runAt(runs []keptSpan, pos int) int {
	// Sources are usually close: this run or the one before.
	for q := len(runs) - 1; q >= 0 && q >= len(runs)-2; q-- {
		if int(runs[q].raw) <= pos {
			if pos < int(runs[q].raw+runs[q].n) {
				return q
			}
			return -1
		}
	}
	lo, hi := 0, len(runs) // the first run ending after pos is in [lo, hi]
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if int(runs[m].raw+runs[m].n) > pos {
			hi = m
		} else {
			lo = m + 1
		}
	}
	if lo < len(runs) && int(runs[lo].raw) <= pos {
		return lo
	}
	return -1
}

// compressForward is compressSpliced for what encodeForward returned: head
// (nil, or the request blanked in place) followed by tail.
func (s *scanned) compressForward(dst, in, head, tail []byte) ([]byte, int) {
	if head == nil {
		return s.compressSpliced(dst, in, tail)
	}
	if len(s.bits) < len(head)/64+2 {
		s.bits = make([]uint64, len(head)/64+2)
	}
	if r, ok := compressInPlace(dst, in, head, tail, s.holes, s.bits); ok {
		return r, len(head) - len(s.holes)
	}
	// The sender's block cannot be walked (s2's extensions, say): the
	// output compressed whole, as compressSpliced would, head and tail
	// behind one header (a snappy block's elements may end anywhere).
	dst = binary.AppendUvarint(dst[:0], uint64(len(head)+len(tail)))
	return appendSnappyElements(appendSnappyElements(dst, head), tail), 0
}

// compressInPlace is compressSpliced for an output that is the request
// (req, decoded from the sender's block in) with the bytes at holes changed,
// and tail after it, as encode makes it when it blanks every series it
// drops or changes (see blankTag): nothing moves, so every element of the
// sender decodes to the same bytes at the same place, but for those that
// hold a hole or copy from one. It walks the elements once:
//
//   - an element that neither holds a hole nor copies from one is appended
//     as it came (consecutive ones in one append);
//   - a literal that holds holes is appended as it came too, and the holes'
//     new bytes are written into it (a literal's bytes are the request's);
//   - a copy that holds a hole, or copies from one, is written as a literal
//     of what it must decode to (at most 64 bytes).
//
// The new bytes after the request are compressed on their own. Each element
// costs a table lookup and a few operations without a branch that depends
// on its kind (the kinds come in no order a CPU can predict): bits, one bit
// per byte of the request set at the holes, tells whether a copy's source
// holds one. bits is scratch of at least len(raw)/64+2 zero words, returned
// zero. ok is false when the block cannot be walked (not snappy, or not
// raw), and the caller compresses in another way.
func compressInPlace(dst, in, req, tail []byte, holes []int, bits []uint64) (_ []byte, ok bool) {
	n, hdr := binary.Uvarint(in)
	if hdr <= 0 || n != uint64(len(req)) || len(bits) < len(req)/64+2 {
		return dst, false
	}
	for _, x := range holes {
		bits[x>>6] |= 1 << (x & 63)
	}
	dst, ok = walkInPlace(binary.AppendUvarint(dst[:0], uint64(len(req)+len(tail))), in[hdr:], req, holes, bits)
	for _, x := range holes {
		bits[x>>6] = 0
	}
	if !ok {
		return dst, false
	}
	return appendSnappyElements(dst, tail), true
}

// walkInPlace appends the elements of in, the sender's block after its
// header, edited as compressInPlace says; out is the request as it goes
// (with the holes' new bytes). keptElements passes over the elements that
// stay as they came; this loop handles the others, one at a time.
func walkInPlace(dst, in, out []byte, holes []int, bits []uint64) ([]byte, bool) {
	next, h, last := len(out), 0, -1 // the first hole at or after d (holes[h]), the last before
	if len(holes) > 0 {
		next = holes[0]
	}
	vs := 0         // in[vs:p]: elements appended as they came, not yet
	var fix []int   // holes inside the literals among them
	var fixAt []int // and where in in their bytes are
	d, p, n := 0, 0, len(in)
	for {
		p, d = keptElements(in, p, d, next, last, bits)
		if p >= n {
			break
		}
		e, nx, ok := nextSnappyElem(in, p)
		if !ok || e.length > len(out)-d || e.copy && e.offset > d { // truncated, offset 0, past the request's end, before the block
			return dst, false
		}
		length := e.length
		if !e.copy { // a literal: as it came, holes written into it
			for next < d+length {
				fix, fixAt = append(fix, next), append(fixAt, nx-length+next-d)
				last, h, next = next, h+1, len(out) // on to the next hole
				if h < len(holes) {
					next = holes[h]
				}
			}
			d, p = d+length, nx
			continue
		}
		if next < d+length || d-e.offset <= last && copiesAHole(bits, d-e.offset, length) { // a literal of its bytes
			base := len(dst) - vs
			dst = append(dst, in[vs:p]...)
			for k, at := range fixAt {
				dst[base+at] = out[fix[k]]
			}
			fix, fixAt = fix[:0], fixAt[:0]
			dst = appendSnappyLiteral(dst, out[d:d+length])
			for next < d+length {
				last, h, next = next, h+1, len(out)
				if h < len(holes) {
					next = holes[h]
				}
			}
			vs = nx
		}
		d, p = d+length, nx
	}
	if d != len(out) || h != len(holes) {
		return dst, false
	}
	base := len(dst) - vs
	dst = append(dst, in[vs:]...)
	for k, at := range fixAt {
		dst[base+at] = out[fix[k]]
	}
	return dst, true
}

// copiesAHole tells whether the length bytes (at most 64) of the request
// from from on hold a hole (a bit of bits).
func copiesAHole(bits []uint64, from, length int) bool {
	sh := uint(from & 63)
	return (bits[from>>6]>>sh|bits[from>>6+1]<<(64-sh))&(^uint64(0)>>uint(64-length)) != 0
}

// keptElements passes over the elements of in from p (which decodes to the
// request from d on) that walkInPlace appends as they came: a literal
// without a hole, a copy that neither holds a hole nor copies one. It
// returns where the first other element starts, and what it decodes to:
// one that reaches the hole next, or past the request's end (next is never
// after it), or copies a hole (bits; only a copy from at or before last,
// the last hole before d, can: most copies reach back less far, to the
// series before, and skip the bit test); one not well formed (offset 0,
// reaching before the block, past the block's end); or one in the block's
// last four bytes, which it leaves to the caller's careful parse.
//
// It is the walk's hot loop (every element of the block: 44,000 in a
// 2,000-sample request), kept apart so that its few variables stay in
// registers: inline in walkInPlace, beside the state of the edits, they
// were spilled to the stack at every element, and the walk took 1.4 times
// as long (BenchmarkSnappySplice/merged=6%/forward).
func keptElements(in []byte, p, d, next, last int, bits []uint64) (int, int) {
	for p+5 <= len(in) {
		e := in[p : p+5 : p+5] // the tag and the 4 bytes after it: one bounds check
		tag := e[0]
		if tag&3 == 0 { // a literal
			length, size := int(tag>>2)+1, 1
			if length > 60 { // its length in the 1-4 bytes after the tag
				nb := length - 60
				length = int(uint64(binary.LittleEndian.Uint32(e[1:]))&(1<<(8*nb)-1)) + 1
				size = 1 + nb
			}
			if d+length > next || length <= 0 || length > len(in)-p-size { // <= 0: overflow on 32-bit
				return p, d
			}
			d, p = d+length, p+size+length
			continue
		}
		var length, off, size int
		switch tag & 3 { // a branch, not a table: predicted, it lets the walk run ahead
		case 1:
			length, off, size = 4+int(tag>>2&7), int(tag&0xe0)<<3|int(e[1]), 2
		case 2:
			length, off, size = 1+int(tag>>2), int(e[1])|int(e[2])<<8, 3
		default:
			length, off, size = 1+int(tag>>2), int(binary.LittleEndian.Uint32(e[1:])), 5
		}
		// A hole in its bytes, or in its source's: a copy reaching into
		// the bytes after d (a repeat) reaches the hole next first.
		if d+length > next || uint(off-1) >= uint(d) || d-off <= last && copiesAHole(bits, d-off, length) {
			return p, d
		}
		d, p = d+length, p+size
	}
	return p, d
}
