package remotewrite

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"unsafe"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwfix/rwfix/remotewrite/series"
)

// The fast path. A remote-write request is indexed in place — the offsets of
// its series, labels and symbols in the decompressed buffer — instead of
// being decoded into generated structs: a series that no rule touches is
// never copied, converted or allocated, and is forwarded as the original
// bytes. A changed request is re-encoded by splicing: unchanged series are
// copied as they came, changed ones are re-encoded (new labels, the other
// fields copied byte for byte), and RW 2.0 symbols a rewrite needs are
// appended to the symbols table.
//
// The generated-struct path in codec.go (batch) stays as the reference: the
// differential test runs both on random requests and requires identical
// output, and it converts RW 2.0 to RW 1.0 for upstreams that need it.

// Field numbers of the remote-write messages.
const (
	v1ReqSeries                                        = 1
	v1SeriesLabels, v1SeriesSamples, v1SeriesExemplars = 1, 2, 3
	v1SeriesHistograms                                 = 4
	v1LabelName, v1LabelValue                          = 1, 2
	v2ReqSymbols, v2ReqSeries                          = 4, 5
	v2SeriesRefs, v2SeriesSamples, v2SeriesHistograms  = 1, 2, 3
	v2SeriesExemplars, v2SeriesMetadata                = 4, 5
	v2ExemplarRefs                                     = 1
	v2MetadataHelpRef, v2MetadataUnitRef               = 3, 4
	sampleValue, sampleTimestamp, sampleStartTimestamp = 1, 2, 3
)

type span struct{ off, end uint32 }

// seriesIdx locates one series.
type seriesIdx struct {
	field  span   // the whole top-level field: tag, length and message
	body   span   // the TimeSeries message
	l0, l1 uint32 // its label pairs: RW 1.0 lbls[l0:l1], RW 2.0 refs[l0:l1]
	// lab is the bytes of its RW 1.0 label fields when they are contiguous
	// (labSplit false): if they are all ASCII, so is every name and value,
	// and validate checks UTF-8 with one pass over them.
	lab      span
	labSplit bool
	hasHist  bool
	// hasEx: its message has an exemplars field (of any wire type, as
	// encodeSeries copies them by number).
	hasEx bool
	// unsorted: its labels are not in name order on the wire (vmagent, for
	// one, appends job and instance last). It is read, repaired and
	// forwarded with its labels sorted, as Prometheus' receiver sorts them.
	unsorted bool
	// invalid: Prometheus' receiver would not store it (see checkLabels); it
	// is forwarded as it came, never repaired, and the upstream decides.
	invalid bool
	// RW 1.0, noted by the scan while each label's bytes are at hand (see
	// plainSeries, which then reads no label again): notPlain, some name
	// empty, not after the one before it, or a metric name without a value;
	// hasName, a metric name; the longest name and value, or a bound of
	// them below 128 (see labelNotes).
	notPlain, hasName bool
	// ascii: its label fields are one run (labSplit false) and all ASCII,
	// checked by the scan while they are at hand (see validate).
	ascii             bool
	nameMax, valueMax uint32
	// named: 1 + the index in lbls of its metric name's value, when the
	// scan's fast path read it (0: not), so that cursor.Get finds it
	// without a walk.
	named uint32
}

// noteLabel records, for plainSeries, a label of an RW 1.0 series read by
// the scan; prev is the name before it (an empty span for the first). Most
// names come after the one before in their first byte and do not start with
// the metric name's '_': only the others take noteLabelSlow. (The scan's
// fast path does not call it: it orders names by their nameKey.)
func (si *seriesIdx) noteLabel(b []byte, prev, name, value span) {
	nl, vl := name.end-name.off, value.end-value.off
	si.nameMax, si.valueMax = max(si.nameMax, nl), max(si.valueMax, vl)
	if nl == 0 || prev.end == 0 || b[name.off] <= b[prev.off] || b[name.off] == '_' { // '_': the metric name's first byte
		si.noteLabelSlow(b, prev, name, vl)
	}
}

// noteLabelSlow is noteLabel's check of an empty name, of a name not after
// the one before, and of the metric name.
func (si *seriesIdx) noteLabelSlow(b []byte, prev, name span, vl uint32) {
	nl := name.end - name.off
	switch {
	case nl == 0:
		si.notPlain = true
	case prev.end > prev.off && bytes.Compare(b[name.off:name.end], b[prev.off:prev.end]) <= 0:
		si.notPlain = true
	}
	if int(nl) == len(model.MetricNameLabel) && string(b[name.off:name.end]) == model.MetricNameLabel {
		si.hasName = true
		si.notPlain = si.notPlain || vl == 0
	}
}

// scanned is one decompressed request, indexed. It is pooled: Reset clears
// it for reuse without freeing its slices.
type scanned struct {
	proto  remoteapi.WriteMessageType
	raw    []byte
	fields []span // every top-level field, in order
	isSer  []int32
	series []seriesIdx
	lbls   []span // RW 1.0: name, value, name, value, ...
	refs   []uint32
	syms   []span // RW 2.0 symbols
	c      counts

	// symRun is the bytes of the RW 2.0 symbol fields when they are
	// contiguous (symSplit false): if they are all ASCII, so is every
	// symbol, and validate checks UTF-8 with one pass over them.
	symRun   span
	symSplit bool

	// Edits, set by repair: per series, allocated on the first edit.
	edits   []seriesEdit
	nEdits  int
	drop    []bool // series dropped, when nDrop > 0
	nDrop   int
	arena   []series.Sample // samples read for the merge
	extra   []extraSeries
	scratch []byte
	keyBuf  []byte // SeriesKey's, RW 2.0 (see symbolsKey)
	newSyms []string
	symIdx  symIndex // symbol's table (symtable.go)
	cur     cursor
	names   []string // scratch of validate
	// Scratch of validate for RW 2.0 (indexSymbols): per symbol its facts
	// and its rank as a name; the symbols used as names.
	symFacts []uint8
	symRank  []uint32
	nameSyms []uint32
	unranked bool // too many distinct names to rank (maxRankedNames)
	// maxLabelRef: the largest label reference of the RW 2.0 series (so
	// that scanV2 looks for the one outside the table only if there is one)
	maxLabelRef uint64
	invalid     []string // reasons of the invalid series, for the metrics

	// Of the last encode, for compressSpliced (snappysplice.go): the runs
	// copied as they came.
	kept []keptSpan
	// blank is the largest share of the request's bytes that encode may
	// blank in place (see blankTag); 0: none, changed series are cut out.
	// Set by the handler before each encode; blanked is what the last
	// encode blanked, in bytes.
	blank   float64
	blanked int
	// holes: where the last encode blanked a series (the tag's offset), in
	// order, when its output is the request with those bytes changed and
	// new bytes after it (inPlace; see compressInPlace).
	holes   []int
	inPlace bool
	moved   []int     // the series blanked and sent again after the others
	vals    []patchAt // where patched series' sample values (and timestamps) are (see patchable)
	bits    []uint64  // compressInPlace's scratch, kept zero
	// minT: the smallest sample timestamp, MaxInt64 with no sample,
	// MinInt64 when one could not be read fast (see MinTime).
	minT int64
}

// extraSeries is a merged output appended to the request.
type extraSeries struct {
	ls      labels.Labels
	samples []series.Sample
}

type seriesEdit struct {
	ls        labels.Labels   // new labels, when relabeled
	samples   []series.Sample // merged samples, when merged
	srcs      []int           // the merged output's sources
	relabeled bool
	merged    bool
	// patch: only its sample values change, written in place (blanking
	// decides it: see patchable); s.vals[v0:v1] are where the values
	// (and the timestamps that change) are.
	patch  bool
	v0, v1 int32
}

var scannedPool = sync.Pool{New: func() any { return &scanned{} }}

func (s *scanned) reset() {
	s.raw = nil
	s.fields, s.isSer, s.series = s.fields[:0], s.isSer[:0], s.series[:0]
	s.lbls, s.refs, s.syms = s.lbls[:0], s.refs[:0], s.syms[:0]
	s.symRun, s.symSplit = span{}, false
	s.c, s.maxLabelRef = counts{}, 0
	clear(s.edits)
	s.edits, s.nEdits = s.edits[:0], 0
	clear(s.drop)
	s.drop, s.nDrop = s.drop[:0], 0
	s.symIdx.reset()
	s.blank, s.blanked = 0, 0
	s.holes, s.inPlace, s.vals = s.holes[:0], false, s.vals[:0]
	s.arena = s.arena[:0]
	s.names, s.invalid = s.names[:0], s.invalid[:0]
	s.symFacts, s.symRank, s.nameSyms = s.symFacts[:0], s.symRank[:0], s.nameSyms[:0]
	clear(s.extra)
	s.extra = s.extra[:0]
	s.newSyms = s.newSyms[:0]
	s.kept = s.kept[:0]
	s.minT = math.MaxInt64
}

func (s *scanned) release() {
	s.reset()
	scannedPool.Put(s)
}

var errTruncated = errors.New("truncated or malformed protobuf")

// str returns the bytes of sp as a string without copying. Valid only while
// raw is: never keep it beyond the request.
func (s *scanned) str(sp span) string {
	if sp.end == sp.off {
		return ""
	}
	return unsafe.String(&s.raw[sp.off], int(sp.end-sp.off))
}

// scan indexes raw, a decompressed request in the given protocol.
func scan(proto remoteapi.WriteMessageType, raw []byte) (*scanned, error) {
	s := scannedPool.Get().(*scanned)
	s.reset()
	s.proto, s.raw = proto, raw
	var err error
	if proto == ProtoV2 {
		err = s.scanV2()
	} else {
		err = s.scanV1()
	}
	if err != nil {
		s.release()
		return nil, fmt.Errorf("%w: decoding %s: %w", ErrCorrupt, proto, err)
	}
	return s, nil
}

// walk calls f for each field of the message b[sp] (slow path: merged
// series and RW 2.0 start timestamps only).
func walk(b []byte, sp span, f func(num protowire.Number, typ protowire.Type, val span) error) error {
	sub := b[:sp.end]
	for off := int(sp.off); off < len(sub); {
		num, typ, val, end := next(sub, off)
		if end < 0 {
			return errTruncated
		}
		if err := f(num, typ, val); err != nil {
			return err
		}
		off = end
	}
	return nil
}

func (s *scanned) scanV1() error {
	b := s.raw
	for off := 0; off < len(b); {
		num, typ, val, end := next(b, off)
		if end < 0 {
			return errTruncated
		}
		s.fields = append(s.fields, span{uint32(off), uint32(end)})
		if num == v1ReqSeries && typ == protowire.BytesType {
			s.isSer = append(s.isSer, int32(len(s.series)))
			if err := s.scanSeriesV1(span{uint32(off), uint32(end)}, val); err != nil {
				return fmt.Errorf("timeseries[%d]: %w", len(s.series), err)
			}
		} else {
			s.isSer = append(s.isSer, -1)
		}
		off = end
	}
	return nil
}

// varint reads a varint at off: one-byte values (every tag and most lengths
// here) without a call.
func varint(b []byte, off int) (uint64, int) {
	if off < len(b) && b[off] < 0x80 {
		return uint64(b[off]), off + 1
	}
	if off >= len(b) {
		return 0, -1
	}
	v, n := protowire.ConsumeVarint(b[off:])
	if n < 0 {
		return 0, -1
	}
	return v, off + n
}

// next reads the field at off in b (b ends where the message ends). For a
// LEN field, val is its content; for others, its encoded value.
func next(b []byte, off int) (num protowire.Number, typ protowire.Type, val span, end int) {
	// Most fields of a request take a one-byte tag, and a one-byte length
	// (LEN) or value (VARINT): read them here, without the two calls of
	// varint.
	if off+2 <= len(b) {
		if t, v := b[off], b[off+1]; t < 0x80 && t >= 8 && v < 0x80 {
			switch typ = protowire.Type(t & 7); typ {
			case protowire.BytesType:
				if o, e := off+2, off+2+int(v); e <= len(b) {
					return protowire.Number(t >> 3), typ, span{uint32(o), uint32(e)}, e
				}
			case protowire.VarintType:
				return protowire.Number(t >> 3), typ, span{uint32(off + 1), uint32(off + 2)}, off + 2
			}
		}
	}
	tag, off := varint(b, off)
	if off < 0 || tag>>3 == 0 {
		return 0, 0, span{}, -1
	}
	num, typ = protowire.Number(tag>>3), protowire.Type(tag&7)
	switch typ {
	case protowire.BytesType:
		l, o := varint(b, off)
		if o < 0 || l > uint64(len(b)-o) {
			return 0, 0, span{}, -1
		}
		return num, typ, span{uint32(o), uint32(o + int(l))}, o + int(l)
	case protowire.VarintType:
		_, o := varint(b, off)
		return num, typ, span{uint32(off), uint32(max(o, off))}, o
	case protowire.Fixed64Type:
		if len(b)-off < 8 {
			return 0, 0, span{}, -1
		}
		return num, typ, span{uint32(off), uint32(off + 8)}, off + 8
	case protowire.Fixed32Type:
		if len(b)-off < 4 {
			return 0, 0, span{}, -1
		}
		return num, typ, span{uint32(off), uint32(off + 4)}, off + 4
	}
	return 0, 0, span{}, -1 // groups are not used by remote write
}

// wellFormed checks that b[sp] is a sequence of fields.
func wellFormed(b []byte, sp span) bool {
	sub := b[:sp.end]
	for off := int(sp.off); off < len(sub); {
		_, _, _, off = next(sub, off)
		if off < 0 {
			return false
		}
	}
	return true
}

// sampleTime reads a Sample in its common encoding and returns its
// timestamp: value (tag 0x09, 8 bytes; left out when +0, as gogo does), then
// timestamp (tag 0x10, a varint), then for RW 2.0 maybe a start timestamp
// (tag 0x18, a varint), ending the message. ok is false for anything else,
// which wellFormed then checks.
func sampleTime(b []byte, val span) (t int64, ok bool) {
	o, e := int(val.off), int(val.end)
	if e-o >= 11 && b[o] == 0x09 {
		o += 9
	}
	if o >= e || b[o] != 0x10 {
		return 0, false
	}
	u, end := varint(b[:e], o+1)
	if end > 0 && end < e && b[end] == 0x18 {
		_, end = varint(b[:e], end+1)
	}
	return int64(u), end == e
}

// sampled records a sample at t (see minT).
func (s *scanned) sampled(t int64, ok bool) {
	if !ok {
		s.minT = math.MinInt64
	} else if t < s.minT {
		s.minT = t
	}
}

// MinTime returns the smallest sample timestamp of the request (MaxInt64
// when it has no sample), or MinInt64 when a sample is not in the common
// encoding: series.TimeBounded.
func (s *scanned) MinTime() int64 { return s.minT }

func (s *scanned) scanSeriesV1(field, body span) error {
	si := seriesIdx{field: field, body: body, l0: uint32(len(s.lbls))}
	b := s.raw[:body.end]
	var (
		prev span // the name of the label before
		fast labelNotes
	)
	for off := int(body.off); off < len(b); {
		// Nearly every label takes the fast path (scanLabels), a run of
		// them at once; the others, the general loop below.
		if b[off] == 0x0a {
			end := 0
			if end, s.lbls = scanLabels(b, off, s.lbls, &fast); end > off {
				si.addLabelField(off, end)
				prev, off = s.lbls[len(s.lbls)-2], end
				continue
			}
		}
		num, typ, val, end := next(b, off)
		if end < 0 {
			return errTruncated
		}
		start := off
		off = end
		if num == v1SeriesExemplars {
			si.hasEx = true
		}
		if typ != protowire.BytesType {
			continue
		}
		switch num {
		case v1SeriesLabels:
			si.addLabelField(start, end)
			var name, value span
			lb := b[:val.end]
			for lo := int(val.off); lo < len(lb); {
				n, t, v, e := next(lb, lo)
				if e < 0 {
					return errTruncated
				}
				lo = e
				if t == protowire.BytesType {
					switch n {
					case v1LabelName:
						name = v
					case v1LabelValue:
						value = v
					}
				}
			}
			si.noteLabel(b, prev, name, value)
			prev = name
			fast.prev = nameKey(s.raw, name)
			s.lbls = append(s.lbls, name, value)
		case v1SeriesSamples:
			s.c.samples++
			t, ok := sampleTime(b, val)
			if !ok && !wellFormed(b, val) {
				return errTruncated
			}
			s.sampled(t, ok)
		case v1SeriesExemplars:
			s.c.exemplars++
		case v1SeriesHistograms:
			s.c.histograms++
			si.hasHist = true
		}
	}
	// The fast path's notes: its lengths are bounds, above the longest
	// only where plainSeries' limits are below 128.
	si.nameMax, si.valueMax = max(si.nameMax, fast.lens&0xff), max(si.valueMax, fast.lens>>8)
	if fast.named > 0 {
		value := s.lbls[fast.named-1]
		si.hasName, si.notPlain = true, si.notPlain || value.end == value.off
		si.named = fast.named
	}
	si.l1 = uint32(len(s.lbls))
	si.ascii = !si.labSplit && isASCII(b[si.lab.off:si.lab.end])
	s.series = append(s.series, si)
	s.c.series++
	return nil
}

// labelNotes is what scanLabels notes of a series' labels for plainSeries,
// as noteLabel does, and the nameKey of the last name.
type labelNotes struct {
	// prev is the nameKey of the name before: 0 before the first label,
	// all ones when it is not known (then scanLabels leaves the next label
	// to the general loop, which compares the names' bytes).
	prev uint64
	// lens is every name's length ORed, and every value's shifted by 8:
	// at least the longest (each is below 128), for plainSeries.
	lens uint32
	// named is 1 + the index in lbls of the metric name's value (0: none
	// seen).
	named uint32
}

// scanLabels is the scan's fast path: from off, it appends to lbls the
// labels of a run of label fields of an RW 1.0 series in the common
// encoding, each shorter than 128 bytes with a name and a value shorter
// than 128 bytes (0x0a len 0x0a len name 0x12 len value), as long as each
// name comes after the one before by its nameKey, eight bytes of b start at
// the name, and lbls has room. It returns where it stopped, before the
// first field it left to the general loop (off when it took none). b ends
// where the series does.
//
// A function of its own, called once or twice per series: it calls nothing,
// and keeps most of its state in registers. Within the scan's loop, where
// the general path's calls are, the compiler spilled and reloaded it for
// every label; and names now compare by eight bytes at once, not by their
// first byte with a call for the others (three of LiteLLM's fifteen, and
// the metric name). A clean request of 2,000 LiteLLM series (30,000 labels)
// took 5.6 million instructions to scan, 4.3 million now.
func scanLabels(b []byte, off int, lbls []span, ln *labelNotes) (int, []span) {
	pk, lens, named := ln.prev, ln.lens, ln.named
	n := len(lbls)
	dst := lbls[n:cap(lbls)]
	for off+12 <= len(b) && len(dst) >= 2 {
		f := b[off : off+12]
		// 0x0a (a label) and its length, then 0x0a (its name) and its
		// length, both below 0x80: one load.
		w := binary.LittleEndian.Uint32(f)
		if w&0x80ff80ff != 0x000a000a {
			break
		}
		nl := int(w >> 24)
		e, vo := off+2+int(w>>8&0xff), off+4+nl // the label's end, its value's tag
		if e > len(b) || vo+2 > e {
			break
		}
		// 0x12 (its value) and its length, below 0x80, ending the label.
		vl := int(b[vo+1])
		if b[vo] != 0x12 || vo+2+vl != e {
			break
		}
		// The name's order, as noteLabel checks it: a key above the one
		// before says the name comes after it, so it is not empty either.
		k := binary.BigEndian.Uint64(f[4:])
		if nl < 8 {
			k &^= math.MaxUint64 >> (8 * nl)
		}
		if k <= pk {
			break
		}
		if k == metricNameKey && nl == len(model.MetricNameLabel) {
			named = uint32(cap(lbls) - len(dst) + 2)
		}
		pk = k
		lens |= uint32(nl) | uint32(vl)<<8
		dst[0], dst[1] = span{uint32(off + 4), uint32(vo)}, span{uint32(vo + 2), uint32(e)}
		dst = dst[2:]
		off = e
	}
	ln.prev, ln.lens, ln.named = pk, lens, named
	return off, lbls[:cap(lbls)-len(dst)]
}

// nameKey returns the first eight bytes of the label name b[name] as a
// big-endian number, zero-padded when the name is shorter: where the keys
// of two names differ, they order the names as bytes.Compare does (a name
// that is a prefix of the other has zeros where the other has bytes), so
// that the scan's fast path checks the order of most names with one
// comparison. Equal keys say nothing (names that share eight bytes, or
// differ in zero bytes after their end), nor does a key of 0 (an empty
// name). It returns all ones (which no name follows) when fewer than eight
// bytes of b start at the name.
func nameKey(b []byte, name span) uint64 {
	if int(name.off) > len(b)-8 {
		return math.MaxUint64
	}
	k := binary.BigEndian.Uint64(b[name.off:])
	if nl := name.end - name.off; nl < 8 {
		k &^= math.MaxUint64 >> (8 * nl)
	}
	return k
}

// metricNameKey is nameKey of the metric name, which is eight bytes long.
const metricNameKey = uint64('_')<<56 | uint64('_')<<48 | uint64('n')<<40 | uint64('a')<<32 |
	uint64('m')<<24 | uint64('e')<<16 | uint64('_')<<8 | uint64('_')

// labelRun returns where its first run of RW 1.0 label fields starts and
// ends in the request, so that a walk of its fields for its samples steps
// over the labels at once (15 fields of LiteLLM's); -1 when there is none
// (RW 2.0: its label references are one field).
func (si *seriesIdx) labelRun() (at, end int) {
	if si.lab.end <= si.lab.off {
		return -1, -1
	}
	return int(si.lab.off), int(si.lab.end)
}

// addLabelField extends the series' label bytes with the field b[off:end].
func (si *seriesIdx) addLabelField(off, end int) { extendRun(&si.lab, &si.labSplit, off, end) }

// extendRun extends run, the bytes of fields that follow each other, with
// the field b[off:end], or sets split when the field does not follow them.
func extendRun(run *span, split *bool, off, end int) {
	switch {
	case run.end == 0:
		*run = span{uint32(off), uint32(end)}
	case run.end == uint32(off):
		run.end = uint32(end)
	default:
		*split = true
	}
}

func (s *scanned) scanV2() error {
	b := s.raw
	maxRef := uint64(0)
	for off := 0; off < len(b); {
		// Nearly every symbol takes the fast path (scanSymbols), the whole
		// table at once; the others, the general loop below.
		if b[off] == 0x22 {
			nf, ns := len(s.fields), len(s.syms)
			room := min(cap(s.fields)-nf, cap(s.isSer)-nf, cap(s.syms)-ns)
			if room < 16 {
				n := max(64, nf)
				s.fields, s.isSer, s.syms = slices.Grow(s.fields, n), slices.Grow(s.isSer, n), slices.Grow(s.syms, n)
				room = min(cap(s.fields)-nf, cap(s.isSer)-nf, cap(s.syms)-ns)
			}
			if end, k := scanSymbols(b, off, s.fields[nf:nf+room], s.syms[ns:ns+room]); k > 0 {
				s.fields, s.syms = s.fields[:nf+k], s.syms[:ns+k]
				isSer := s.isSer[nf : nf+k]
				for j := range isSer {
					isSer[j] = -1
				}
				s.isSer = s.isSer[:nf+k]
				s.addSymbolFields(off, end)
				off = end
				continue
			}
		}
		num, typ, val, end := next(b, off)
		if end < 0 {
			return errTruncated
		}
		s.fields = append(s.fields, span{uint32(off), uint32(end)})
		s.isSer = append(s.isSer, -1)
		switch {
		case num == v2ReqSymbols && typ == protowire.BytesType:
			s.syms = append(s.syms, val)
			s.addSymbolFields(off, end)
		case num == v2ReqSeries && typ == protowire.BytesType:
			s.isSer[len(s.isSer)-1] = int32(len(s.series))
			m, err := s.scanSeriesV2(span{uint32(off), uint32(end)}, val)
			if err != nil {
				return fmt.Errorf("timeseries[%d]: %w", len(s.series)-1, err)
			}
			maxRef = max(maxRef, m)
		}
		off = end
	}
	n := uint32(len(s.syms))
	for i, si := range s.series {
		if (si.l1-si.l0)%2 != 0 {
			return fmt.Errorf("timeseries[%d]: labels has an odd number of label references", i)
		}
		if s.maxLabelRef < uint64(n) {
			continue // no reference outside: no need to look
		}
		for _, r := range s.refs[si.l0:si.l1] {
			if r >= n {
				return fmt.Errorf("timeseries[%d]: labels reference %d outside of the symbols table (size %d)", i, r, n)
			}
		}
	}
	if len(s.series) > 0 && maxRef >= uint64(n) {
		return fmt.Errorf("exemplar or metadata reference %d outside of the symbols table (size %d)", maxRef, n)
	}
	return nil
}

// addSymbolFields extends the request's symbol bytes (symRun) with the
// symbol fields b[off:end].
func (s *scanned) addSymbolFields(off, end int) { extendRun(&s.symRun, &s.symSplit, off, end) }

// scanSymbols is scanV2's fast path, as scanLabels is scanV1's: from off,
// it indexes a run of symbol fields (tag 0x22, a length of one or two
// bytes) into fields (the whole field) and syms (its string), as long as
// they have room. It returns where it stopped, before the first field it
// left to the general loop (off when it took none), and how many it took.
//
// A request has a symbol for each distinct string (8,000 in one of 2,000
// LiteLLM series), each its own field: the general loop spent a call to
// next and two appends on each. Its caller marks them as no series: with
// that third slice here, the loop kept too little in registers.
func scanSymbols(b []byte, off int, fields, syms []span) (int, int) {
	syms = syms[:len(fields)]
	k := 0
	for ; k < len(fields) && off+2 <= len(b) && b[off] == 0x22; k++ {
		l, o := uint32(b[off+1]), off+2
		if l >= 0x80 {
			if o >= len(b) || b[o] >= 0x80 {
				break
			}
			l, o = l&0x7f|uint32(b[o])<<7, o+1
		}
		if int(l) > len(b)-o {
			break
		}
		e := o + int(l)
		fields[k], syms[k] = span{uint32(off), uint32(e)}, span{uint32(o), uint32(e)}
		off = e
	}
	return off, k
}

// appendRefs decodes label references, packed or not.
func appendRefs(dst []uint32, b []byte, typ protowire.Type, val span) ([]uint32, uint64, error) {
	switch typ {
	case protowire.BytesType:
		// References below 16,384 (most tables' every one) take one or two
		// bytes: read them here, in a loop that calls nothing (with the
		// call of varint in it, the compiler saved and reloaded its state
		// on every reference of two bytes). Each takes a byte at least: dst
		// grows once, for as many as there are bytes, and takes them
		// without append's check of its room. A longer one (or a malformed
		// one) sends the field to appendRefsSlow.
		p := b[val.off:val.end]
		n := len(dst)
		dst = slices.Grow(dst, len(p))
		out := dst[n : n+len(p)]
		var maxRef uint32
		off, k := uint(0), 0
		for off < uint(len(p)) {
			v := uint32(p[off])
			if v < 0x80 {
				off++
			} else {
				if off+1 >= uint(len(p)) || p[off+1] >= 0x80 {
					return appendRefsSlow(dst[:n], p)
				}
				v = v&0x7f | uint32(p[off+1])<<7
				off += 2
			}
			maxRef = max(maxRef, v)
			out[k] = v
			k++
		}
		return dst[:n+k], uint64(maxRef), nil
	case protowire.VarintType:
		v, off := varint(b[:val.end], int(val.off))
		if off < 0 || v > 1<<32-1 {
			return dst, 0, errTruncated
		}
		return append(dst, uint32(v)), v, nil
	}
	return dst, 0, nil
}

// appendRefsSlow is appendRefs of packed references p, any of them three
// bytes or more.
func appendRefsSlow(dst []uint32, p []byte) ([]uint32, uint64, error) {
	var maxRef uint64
	for off := 0; off < len(p); {
		v, e := varint(p, off)
		if e < 0 || v > 1<<32-1 {
			return dst, 0, errTruncated
		}
		maxRef = max(maxRef, v)
		dst = append(dst, uint32(v))
		off = e
	}
	return dst, maxRef, nil
}

// maxRefIn returns the largest label reference (field 1) of an RW 2.0
// exemplar, or (metadata) the larger of the help and unit references of a
// series' metadata. (Each series has its metadata: a flag, where a list of
// the fields to read and a call of slices.Contains took about 50
// instructions more per series.)
func maxRefIn(b []byte, val span, metadata bool) (uint64, error) {
	var m uint64
	sub := b[:val.end]
	for off := int(val.off); off < len(sub); {
		n, t, v, e := next(sub, off)
		if e < 0 {
			return 0, errTruncated
		}
		off = e
		switch {
		case metadata:
			if t == protowire.VarintType && (n == v2MetadataHelpRef || n == v2MetadataUnitRef) {
				r, _ := varint(sub, int(v.off))
				m = max(m, r)
			}
		case n == v2ExemplarRefs:
			var scratch [16]uint32
			_, r, err := appendRefs(scratch[:0], b, t, v)
			if err != nil {
				return 0, err
			}
			m = max(m, r)
		}
	}
	return m, nil
}

func (s *scanned) scanSeriesV2(field, body span) (maxRef uint64, err error) {
	si := seriesIdx{field: field, body: body, l0: uint32(len(s.refs))}
	b := s.raw[:body.end]
	for off := int(body.off); off < len(b); {
		num, typ, val, end := next(b, off)
		if end < 0 {
			return 0, errTruncated
		}
		off = end
		var m uint64
		switch num {
		case v2SeriesRefs:
			var r uint64
			if s.refs, r, err = appendRefs(s.refs, b, typ, val); err != nil {
				return 0, err
			}
			s.maxLabelRef = max(s.maxLabelRef, r)
		case v2SeriesSamples:
			if typ == protowire.BytesType {
				s.c.samples++
				t, ok := sampleTime(b, val)
				if !ok && !wellFormed(b, val) {
					return 0, errTruncated
				}
				s.sampled(t, ok)
			}
		case v2SeriesHistograms:
			s.c.histograms++
			si.hasHist = true
		case v2SeriesExemplars:
			s.c.exemplars++
			si.hasEx = true
			if typ == protowire.BytesType {
				m, err = maxRefIn(b, val, false)
			}
		case v2SeriesMetadata:
			if typ == protowire.BytesType {
				m, err = maxRefIn(b, val, true)
			}
		}
		if err != nil {
			return 0, err
		}
		maxRef = max(maxRef, m)
	}
	si.l1 = uint32(len(s.refs))
	s.series = append(s.series, si)
	s.c.series++
	return maxRef, nil
}
