package remotewrite

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"google.golang.org/protobuf/encoding/protowire"
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
	field   span   // the whole top-level field: tag, length and message
	body    span   // the TimeSeries message
	l0, l1  uint32 // its label pairs: RW 1.0 lbls[l0:l1], RW 2.0 refs[l0:l1]
	hasHist bool
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

	// Edits, set by repair.
	newLabels  map[int]labels.Labels
	newSamples map[int]mergedSamples
	drop       map[int]bool
	newSyms    []string
	symLookup  map[string]uint32
	cur        cursor
}

type mergedSamples struct {
	s    []model.SamplePair
	srcs []int
}

var scannedPool = sync.Pool{New: func() any { return &scanned{} }}

func (s *scanned) reset() {
	s.raw = nil
	s.fields, s.isSer, s.series = s.fields[:0], s.isSer[:0], s.series[:0]
	s.lbls, s.refs, s.syms = s.lbls[:0], s.refs[:0], s.syms[:0]
	s.c = counts{}
	s.newLabels, s.newSamples, s.drop, s.symLookup = nil, nil, nil, nil
	s.newSyms = s.newSyms[:0]
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

// fieldAt reads the tag and value bounds of the field at off in b (offsets
// relative to raw, base is b's offset). It returns the value span (for LEN
// fields, the content) and the field's end.
func consumeField(b []byte, off int) (num protowire.Number, typ protowire.Type, val span, end int, err error) {
	num, typ, n := protowire.ConsumeTag(b[off:])
	if n < 0 {
		return 0, 0, span{}, 0, errTruncated
	}
	off += n
	if typ == protowire.BytesType {
		l, m := protowire.ConsumeVarint(b[off:])
		if m < 0 || l > uint64(len(b)-off-m) {
			return 0, 0, span{}, 0, errTruncated
		}
		start := off + m
		return num, typ, span{uint32(start), uint32(start + int(l))}, start + int(l), nil
	}
	m := protowire.ConsumeFieldValue(num, typ, b[off:])
	if m < 0 {
		return 0, 0, span{}, 0, errTruncated
	}
	return num, typ, span{uint32(off), uint32(off + m)}, off + m, nil
}

// walk checks that b[sp] is a sequence of well-formed fields and calls f for
// each (f may be nil).
func walk(b []byte, sp span, f func(num protowire.Number, typ protowire.Type, val span) error) error {
	sub := b[:sp.end]
	for off := int(sp.off); off < int(sp.end); {
		num, typ, val, end, err := consumeField(sub, off)
		if err != nil {
			return err
		}
		if f != nil {
			if err := f(num, typ, val); err != nil {
				return err
			}
		}
		off = end
	}
	return nil
}

func (s *scanned) scanV1() error {
	b := s.raw
	for off := 0; off < len(b); {
		num, typ, val, end, err := consumeField(b, off)
		if err != nil {
			return err
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

func (s *scanned) scanSeriesV1(field, body span) error {
	si := seriesIdx{field: field, body: body, l0: uint32(len(s.lbls))}
	b := s.raw
	err := walk(b, body, func(num protowire.Number, typ protowire.Type, val span) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case v1SeriesLabels:
			var name, value span
			if err := walk(b, val, func(n protowire.Number, t protowire.Type, v span) error {
				if t == protowire.BytesType && n == v1LabelName {
					name = v
				} else if t == protowire.BytesType && n == v1LabelValue {
					value = v
				}
				return nil
			}); err != nil {
				return err
			}
			s.lbls = append(s.lbls, name, value)
		case v1SeriesSamples:
			s.c.samples++
			return walk(b, val, nil)
		case v1SeriesExemplars:
			s.c.exemplars++
		case v1SeriesHistograms:
			s.c.histograms++
			si.hasHist = true
		}
		return nil
	})
	si.l1 = uint32(len(s.lbls))
	s.series = append(s.series, si)
	s.c.series++
	return err
}

func (s *scanned) scanV2() error {
	b := s.raw
	maxRef := uint64(0)
	for off := 0; off < len(b); {
		num, typ, val, end, err := consumeField(b, off)
		if err != nil {
			return err
		}
		s.fields = append(s.fields, span{uint32(off), uint32(end)})
		s.isSer = append(s.isSer, -1)
		switch {
		case num == v2ReqSymbols && typ == protowire.BytesType:
			s.syms = append(s.syms, val)
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

// appendRefs decodes label references, packed or not.
func appendRefs(dst []uint32, b []byte, typ protowire.Type, val span) ([]uint32, uint64, error) {
	var maxRef uint64
	add := func(v uint64) error {
		if v > 1<<32-1 {
			return errTruncated
		}
		maxRef = max(maxRef, v)
		dst = append(dst, uint32(v))
		return nil
	}
	switch typ {
	case protowire.BytesType:
		p := b[val.off:val.end]
		for len(p) > 0 {
			v, n := protowire.ConsumeVarint(p)
			if n < 0 {
				return dst, 0, errTruncated
			}
			if err := add(v); err != nil {
				return dst, 0, err
			}
			p = p[n:]
		}
	case protowire.VarintType:
		v, _ := protowire.ConsumeVarint(b[val.off:val.end])
		if err := add(v); err != nil {
			return dst, 0, err
		}
	}
	return dst, maxRef, nil
}

func (s *scanned) scanSeriesV2(field, body span) (maxRef uint64, err error) {
	si := seriesIdx{field: field, body: body, l0: uint32(len(s.refs))}
	b := s.raw
	err = walk(b, body, func(num protowire.Number, typ protowire.Type, val span) error {
		var err error
		switch num {
		case v2SeriesRefs:
			s.refs, _, err = appendRefs(s.refs, b, typ, val)
			return err
		case v2SeriesSamples:
			if typ == protowire.BytesType {
				s.c.samples++
				return walk(b, val, nil)
			}
		case v2SeriesHistograms:
			s.c.histograms++
			si.hasHist = true
		case v2SeriesExemplars:
			s.c.exemplars++
			if typ == protowire.BytesType {
				return walk(b, val, func(n protowire.Number, t protowire.Type, v span) error {
					if n == v2ExemplarRefs {
						var m uint64
						var scratch [8]uint32
						_, m, err = appendRefs(scratch[:0], b, t, v)
						maxRef = max(maxRef, m)
						return err
					}
					return nil
				})
			}
		case v2SeriesMetadata:
			if typ == protowire.BytesType {
				return walk(b, val, func(n protowire.Number, t protowire.Type, v span) error {
					if (n == v2MetadataHelpRef || n == v2MetadataUnitRef) && t == protowire.VarintType {
						r, _ := protowire.ConsumeVarint(b[v.off:v.end])
						maxRef = max(maxRef, r)
					}
					return nil
				})
			}
		}
		return nil
	})
	si.l1 = uint32(len(s.refs))
	s.series = append(s.series, si)
	s.c.series++
	return maxRef, err
}
