package remotewrite

import "hash/maphash"

// symSeed seeds the hash of symIndex; one per process.
var symSeed = maphash.MakeSeed()

// symIndex finds a string's reference in an RW 2.0 request's symbols table,
// for the series encode writes with labels of their own (a rewrite, a merged
// output). It is an open-addressing table over the request's symbols (and the
// ones encode adds), kept in the pooled scanned state, so that it allocates
// nothing once grown. Each slot holds the upper 32 bits of the string's hash
// and its reference plus one (0: empty), so that a probe compares strings only
// when their hashes agree.
//
// It replaced a Go map of every symbol made per request: in the load
// benchmark's RW 2.0 sparse workload (a few repairs in a request of some 5,000
// symbols), filling that map was 13% of rwfix's CPU.
type symIndex struct {
	slots []uint64
	n     int  // references in slots
	built bool // for the current request
}

// symIndexMaxKeep: a table grown larger than this many slots (by one huge
// request) is not kept for the next request.
const symIndexMaxKeep = 1 << 18

// symStr is the string of reference r: the request's or one encode added.
func (s *scanned) symStr(r uint32) string {
	if int(r) < len(s.syms) {
		return s.str(s.syms[r])
	}
	return s.newSyms[int(r)-len(s.syms)]
}

// symbol returns the reference of str in the RW 2.0 symbols table, adding it
// (to newSyms) if the table lacks it. A string the table holds twice resolves
// to its first reference.
func (s *scanned) symbol(str string) uint32 {
	t := &s.symIdx
	if !t.built {
		s.buildSymIndex(len(s.syms) + len(s.newSyms))
	}
	h := maphash.String(symSeed, str)
	if r, ok := s.findSym(h, str); ok {
		return r
	}
	r := uint32(len(s.syms) + len(s.newSyms))
	s.newSyms = append(s.newSyms, str)
	if 2*(t.n+1) > len(t.slots) {
		s.buildSymIndex(int(r) + 1) // grown: rebuilt with the new symbol in it
		return r
	}
	s.putSym(h, r)
	return r
}

// findSym looks str (of hash h) up.
func (s *scanned) findSym(h uint64, str string) (uint32, bool) {
	t := &s.symIdx
	mask := uint64(len(t.slots) - 1)
	tag := h >> 32 << 32
	for i := h & mask; ; i = (i + 1) & mask {
		e := t.slots[i]
		if e == 0 {
			return 0, false
		}
		if e&^(1<<32-1) == tag && s.symStr(uint32(e)-1) == str {
			return uint32(e) - 1, true
		}
	}
}

// putSym adds reference r, whose string has hash h and is not in the table.
func (s *scanned) putSym(h uint64, r uint32) {
	t := &s.symIdx
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		if t.slots[i] == 0 {
			t.slots[i] = h>>32<<32 | uint64(r+1)
			t.n++
			return
		}
	}
}

// buildSymIndex fills the table with the first n references, at most half
// full.
func (s *scanned) buildSymIndex(n int) {
	t := &s.symIdx
	size := 64
	for size < 2*(n+1) {
		size *= 2
	}
	if cap(t.slots) >= size {
		t.slots = t.slots[:size]
		clear(t.slots)
	} else {
		t.slots = make([]uint64, size)
	}
	t.n, t.built = 0, true
	for r := range uint32(n) {
		str := s.symStr(r)
		h := maphash.String(symSeed, str)
		if _, dup := s.findSym(h, str); !dup {
			s.putSym(h, r)
		}
	}
}

// resetSymIndex forgets the table's contents (keeping its memory, unless
// huge) for the next request.
func (t *symIndex) reset() {
	t.built, t.n = false, 0
	if cap(t.slots) > symIndexMaxKeep {
		t.slots = nil
	}
}
