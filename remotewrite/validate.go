package remotewrite

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/common/model"
)

// A request's validation, on the scanned index: rwfix's own limits (a
// request beyond one is refused whole), then the verdict Prometheus'
// receiver would give each series (sorted, or skipped: forwarded as it
// came, never repaired).

// validate checks the scanned request against rwfix's own limits (sizes
// and counts, which protect rwfix: a request beyond one is refused whole,
// 400), and marks the series that Prometheus' receiver would sort or skip
// rather than refuse the request for (see checkLabels). It reads the index
// only, and allocates only for a series whose labels are out of order.
func (s *scanned) validate(l *Limits) error {
	if len(s.series) > l.MaxSeriesPerRequest {
		return &RejectError{ReasonTooManySeries, fmt.Sprintf("request has %d series, more than the limit of %d", len(s.series), l.MaxSeriesPerRequest)}
	}
	utf := l.ValidateUTF8 == nil || *l.ValidateUTF8
	if s.proto == ProtoV2 {
		return s.validateV2(l, utf)
	}
	for i := range s.series {
		si := &s.series[i]
		// UTF-8 is checked only where some byte is not ASCII: the scan
		// looked at each series' label fields in one pass (tags and
		// one-byte lengths are ASCII too).
		checkUTF := utf && !si.ascii
		if !checkUTF && s.plainSeries(si, l) {
			continue // nearly every series: valid, sorted, within the limits
		}
		if err := s.checkSeries(i, l, checkUTF); err != nil {
			return err
		}
	}
	return nil
}

// validateV2 is validate for RW 2.0. The series share their symbols, so
// what the fast check needs of a label is worked out once per symbol
// (indexSymbols): its facts (empty, too long as a name or as a value, not
// ASCII, the metric name) and, for a symbol used as a name, its rank in
// byte order. A series' fast check then reads two small tables per label
// instead of the symbols' bytes (plainSeriesV2).
func (s *scanned) validateV2(l *Limits, utf bool) error {
	s.indexSymbols(l, utf)
	for i := range s.series {
		si := &s.series[i]
		if s.plainSeriesV2(si, l) {
			continue
		}
		checkUTF := false
		if utf {
			for _, r := range s.refs[si.l0:si.l1] {
				checkUTF = checkUTF || s.symFacts[r]&symNotASCII != 0
			}
		}
		if err := s.checkSeries(i, l, checkUTF); err != nil {
			return err
		}
	}
	return nil
}

// Facts of an RW 2.0 symbol, for plainSeriesV2.
const (
	symEmpty      = 1 << iota // no bytes
	symLongName               // longer than the limit of a label name
	symLongValue              // longer than the limit of a label value
	symNotASCII               // some byte above 0x7f (noted only when UTF-8 is validated)
	symMetricName             // "__name__"
)

// indexSymbols fills s.symFacts (per symbol) and s.symRank (per symbol used
// as a label name: 1 + how many distinct names sort before it, shifted by 8
// above its facts; equal bytes, equal ranks; 0 for the others).
func (s *scanned) indexSymbols(l *Limits, utf bool) {
	n := len(s.syms)
	maxName, maxValue := uint32(l.MaxLabelNameLength), uint32(l.MaxLabelValueLength)
	// UTF-8 is checked per symbol only where some byte of the symbol
	// fields is not ASCII (their tags and one-byte lengths are ASCII too):
	// nearly always one pass over them all, not a call per symbol.
	perSym := utf && (s.symSplit || !isASCII(s.raw[s.symRun.off:s.symRun.end]))
	facts := slices.Grow(s.symFacts[:0], n)[:n]
	for i, sp := range s.syms {
		var f uint8
		nl := sp.end - sp.off
		switch {
		case nl == 0:
			f = symEmpty
		case nl == uint32(len(model.MetricNameLabel)) && string(s.raw[sp.off:sp.end]) == model.MetricNameLabel:
			f = symMetricName
		}
		if nl > maxName {
			f |= symLongName
		}
		if nl > maxValue {
			f |= symLongValue
		}
		if perSym && !isASCII(s.raw[sp.off:sp.end]) {
			f |= symNotASCII
		}
		facts[i] = f
	}
	s.symFacts = facts
	rank := s.symRank
	if cap(rank) < n {
		rank = make([]uint32, n)
	}
	rank = rank[:n]
	clear(rank)
	// The names: every other reference, as each series has an even number
	// of them (scanV2 refuses a request otherwise) and they follow each
	// other in s.refs, series after series. They are marked, then listed
	// in one pass over the table: the same few names come back in every
	// series, and a mark costs no more than a check that it is there.
	refs := s.refs
	for k := 0; k < len(refs); k += 2 {
		rank[refs[k]] = 1
	}
	names := s.nameSyms[:0]
	for r, v := range rank {
		if v != 0 {
			names = append(names, uint32(r))
		}
	}
	s.symRank, s.nameSyms = rank, names
	if s.unranked = len(names) > maxRankedNames; s.unranked {
		return // plainSeriesV2 compares the names' bytes instead
	}
	sym := func(r uint32) []byte { sp := s.syms[r]; return s.raw[sp.off:sp.end] }
	slices.SortFunc(names, func(a, b uint32) int { return bytes.Compare(sym(a), sym(b)) })
	rk := uint32(0)
	for i, r := range names {
		if i == 0 || !bytes.Equal(sym(names[i-1]), sym(r)) {
			rk++
		}
		rank[r] = rk<<8 | uint32(facts[r])
	}
}

// maxRankedNames is how many distinct label names a request may have for
// indexSymbols to rank them. Beyond it (never in practice: LiteLLM's
// requests have 15, a whole Prometheus server's a few hundred) sorting them
// would cost more than comparing each series' names: a request of 32 MB
// with two million distinct names, each series' in order, took 4 s to rank
// against 0.6 s compared (found by a review).
var maxRankedNames = 4096 // a variable: the test sets it low

// checkSeries is validate's full check of series i, the one that names the
// problem: rwfix's limits (an error refuses the request), then Prometheus'
// receiver's verdict, recorded in the series' flags.
func (s *scanned) checkSeries(i int, l *Limits, checkUTF bool) error {
	si := &s.series[i]
	c := seriesPairs{s, si}
	var err *RejectError
	n := c.len()
	if n > l.MaxLabelsPerSeries {
		err = &RejectError{ReasonTooManyLabels, fmt.Sprintf("has %d labels, more than the limit of %d", n, l.MaxLabelsPerSeries)}
	}
	for j := range n {
		name, value := c.pair(j)
		if len(name) > l.MaxLabelNameLength {
			err = &RejectError{ReasonLabelNameTooLong, fmt.Sprintf("label name of %d bytes is longer than the limit of %d", len(name), l.MaxLabelNameLength)}
			break
		}
		if len(value) > l.MaxLabelValueLength {
			err = &RejectError{ReasonLabelValueTooLong, fmt.Sprintf("label %s: value of %d bytes is longer than the limit of %d", name, len(value), l.MaxLabelValueLength)}
			break
		}
	}
	if err != nil {
		err.Msg = fmt.Sprintf("timeseries[%d] %s %s", i, s.describe(i), err.Msg)
		return err
	}
	reason, unsorted := checkLabels(c, checkUTF, &s.names)
	si.unsorted, si.invalid = unsorted && reason == "", reason != ""
	if reason != "" {
		s.invalid = append(s.invalid, reason)
	}
	return nil
}

// plainSeries is validate's fast check, on the index alone: it reports
// whether the series is within the limits and has a metric name, non-empty
// label names, strictly in order (so no duplicate). When it does not, the
// full check (which names the problem) runs. UTF-8 is checked by the caller
// (RW 1.0) or here (RW 2.0: a series with a symbol not ASCII is not plain).
func (s *scanned) plainSeries(si *seriesIdx, l *Limits) bool {
	if s.proto == ProtoV2 {
		return s.plainSeriesV2(si, l)
	}
	if int(si.l1-si.l0)/2 > l.MaxLabelsPerSeries {
		return false
	}
	// Noted by the scan (scanLabels, seriesIdx.noteLabel). Its lengths may
	// be bounds (below 128): a series beyond a limit so small takes the full
	// check, which measures them.
	return si.hasName && !si.notPlain && si.nameMax <= uint32(l.MaxLabelNameLength) && si.valueMax <= uint32(l.MaxLabelValueLength)
}

// plainSeriesV2 is plainSeries for RW 2.0, on the tables of indexSymbols:
// names in strictly rising rank (in order, no name twice), none empty or
// too long, no value too long, a metric name with a value, every symbol
// ASCII (when UTF-8 is validated).
func (s *scanned) plainSeriesV2(si *seriesIdx, l *Limits) bool {
	if int(si.l1-si.l0)/2 > l.MaxLabelsPerSeries {
		return false
	}
	if s.unranked {
		return s.plainSeriesV2Unranked(si)
	}
	facts, rank := s.symFacts, s.symRank
	refs := s.refs[si.l0:si.l1]
	// Without a branch but the order's, and by index (the compiler kept
	// less in registers with refs resliced on each pair): acc ORs the
	// names' facts that make a series not plain and their symMetricName
	// (bit 4, the highest), the values' that do, and a metric name's empty
	// value (vf's symEmpty, bit 0, where nf>>4 is its symMetricName). A
	// name's rank carries its facts (see indexSymbols): one load.
	const nameBad, valueBad = symEmpty | symLongName | symNotASCII, symLongValue | symNotASCII
	var acc uint32
	prev := uint32(0)
	for k := 1; k < len(refs); k += 2 {
		r := rank[refs[k-1]]
		if r <= prev {
			return false
		}
		prev = r
		nf, vf := r&0xff, uint32(facts[refs[k]])
		acc |= nf&(nameBad|symMetricName) | vf&valueBad | vf&(nf>>4)
	}
	return acc == symMetricName
}

// plainSeriesV2Unranked is plainSeriesV2 where indexSymbols did not rank
// the names: it compares their bytes.
func (s *scanned) plainSeriesV2Unranked(si *seriesIdx) bool {
	facts := s.symFacts
	refs := s.refs[si.l0:si.l1]
	var bad uint8
	hasName := false
	for k := 0; k+1 < len(refs); k += 2 {
		nm, v := refs[k], refs[k+1]
		if k > 0 {
			a, b := s.syms[nm], s.syms[refs[k-2]]
			if bytes.Compare(s.raw[a.off:a.end], s.raw[b.off:b.end]) <= 0 {
				return false
			}
		}
		nf, vf := facts[nm], facts[v]
		bad |= nf&(symEmpty|symLongName|symNotASCII) | vf&(symLongValue|symNotASCII)
		if nf&symMetricName != 0 {
			hasName = true
			bad |= vf & symEmpty
		}
	}
	return hasName && bad == 0
}

// isASCII reports whether b has no byte above 0x7f, eight bytes at a time.
func isASCII(b []byte) bool {
	var acc uint64
	for len(b) >= 32 {
		acc |= binary.LittleEndian.Uint64(b) | binary.LittleEndian.Uint64(b[8:]) |
			binary.LittleEndian.Uint64(b[16:]) | binary.LittleEndian.Uint64(b[24:])
		b = b[32:]
	}
	for len(b) >= 8 {
		acc |= binary.LittleEndian.Uint64(b)
		b = b[8:]
	}
	for _, c := range b {
		acc |= uint64(c)
	}
	return acc&0x8080808080808080 == 0
}

// labelPairs are one series' labels in wire order.
type labelPairs interface {
	len() int
	pair(j int) (name, value string)
}

// Why a series is invalid for Prometheus' receiver (storage/remote/write_handler.go,
// RW 1.0 and 2.0): it sorts every series' labels itself, then skips a series
// without a metric name, with an invalid name or value (UTF-8 validation),
// or with a label name twice. rwfix does the same: it sorts, and forwards
// such a series as it came, never repaired, so that the upstream gives the
// verdict it gives without rwfix (RW 1.0: the series is dropped and the
// request accepted; RW 2.0: 400 after storing the other series).
const (
	InvalidNoMetricName   = "no_metric_name"
	InvalidEmptyLabelName = "empty_label_name"
	InvalidUTF8           = "invalid_utf8"
	InvalidDuplicateName  = "duplicate_label_name"
)

// checkLabels reads a series' labels in wire order and reports why
// Prometheus' receiver would skip it ("" if it would not), and whether they
// are out of order. names is scratch space. It does not allocate for a
// sorted series.
//
// Generic, so that each caller's pairs are read by direct, inlined calls.
func checkLabels[P labelPairs](p P, utf bool, names *[]string) (reason string, unsorted bool) {
	var prev string
	n, hasName, dup := 0, false, false
	for j := range p.len() {
		name, value := p.pair(j)
		switch {
		case reason != "":
		case name == "":
			reason = InvalidEmptyLabelName
		case utf && (!utf8.ValidString(name) || !utf8.ValidString(value)):
			reason = InvalidUTF8
		case name == model.MetricNameLabel && value == "":
			reason = InvalidNoMetricName
		}
		if name == model.MetricNameLabel {
			hasName = true
		}
		if n > 0 {
			// Most neighbours differ in their first byte: no call then.
			if len(name) == 0 || len(prev) == 0 || name[0] == prev[0] {
				switch c := strings.Compare(name, prev); {
				case c == 0:
					dup = true
				case c < 0:
					unsorted = true
				}
			} else if name[0] < prev[0] {
				unsorted = true
			}
		}
		prev = name
		n++
	}
	if unsorted && reason == "" {
		// Names out of order can hide a duplicate: look again, sorted.
		ns := (*names)[:0]
		for j := range p.len() {
			name, _ := p.pair(j)
			ns = append(ns, name)
		}
		slices.Sort(ns)
		for j := 1; j < len(ns); j++ {
			dup = dup || ns[j] == ns[j-1]
		}
		*names = ns[:0]
	}
	switch {
	case reason != "":
	case !hasName:
		reason = InvalidNoMetricName
	case dup:
		reason = InvalidDuplicateName
	}
	return reason, unsorted
}

// describe renders series i's labels for an error message, bounded.
func (s *scanned) describe(i int) string {
	var b strings.Builder
	b.WriteByte('{')
	first := true
	s.rawPairs(i, func(name, value string) {
		if b.Len() > 256 {
			return
		}
		if !first {
			b.WriteString(", ")
		}
		first = false
		if !utf8.ValidString(name) {
			name = strconv.Quote(name)
		}
		b.WriteString(name)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(value))
	})
	if b.Len() > 256 {
		b.WriteString(", ...")
	}
	b.WriteByte('}')
	return b.String()
}
