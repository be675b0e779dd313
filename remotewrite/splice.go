package remotewrite

import (
	"bytes"
	"encoding/binary"
	"math"
	"slices"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/zeebo/xxh3"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwfix/rwfix/remotewrite/series"
)

// cursor reads the labels of one series of a scanned request without
// allocating; it is what Repairer.MayChange sees.
type cursor struct {
	s *scanned
	i int
}

// Get returns the value of label name, or "". The string points into the
// request buffer: valid only during the call's request.
func (c *cursor) Get(name string) string {
	s, si := c.s, &c.s.series[c.i]
	if s.proto == ProtoV2 {
		refs := s.refs[si.l0:si.l1]
		for j := 0; j+1 < len(refs); j += 2 {
			if sp := s.syms[refs[j]]; sp.end-sp.off == uint32(len(name)) && s.str(sp) == name {
				return s.str(s.syms[refs[j+1]])
			}
		}
		return ""
	}
	// The metric name (MayChange asks every series for it) where the scan
	// noted it: the only one, as the names are in order.
	if si.named > 0 && !si.notPlain && name == model.MetricNameLabel {
		return s.str(s.lbls[si.named-1])
	}
	// Lengths first: most names differ in theirs, and their bytes are not
	// read then.
	lbls, n := s.lbls[si.l0:si.l1], uint32(len(name))
	for j := 0; j+1 < len(lbls); j += 2 {
		if sp := lbls[j]; sp.end-sp.off == n && s.str(sp) == name {
			return s.str(lbls[j+1])
		}
	}
	return ""
}

// seriesPairs reads one series' labels in wire order, in place.
type seriesPairs struct {
	s  *scanned
	si *seriesIdx
}

func (p seriesPairs) len() int { return int(p.si.l1-p.si.l0) / 2 }

func (p seriesPairs) pair(j int) (name, value string) {
	s, k := p.s, p.si.l0+uint32(2*j)
	if s.proto == ProtoV2 {
		return s.str(s.syms[s.refs[k]]), s.str(s.syms[s.refs[k+1]])
	}
	return s.str(s.lbls[k]), s.str(s.lbls[k+1])
}

// The Batch of a scanned request: labels read in place.

func (s *scanned) Len() int { return len(s.series) }

func (s *scanned) Getter(i int) series.Getter {
	s.cur.s, s.cur.i = s, i
	return &s.cur
}

func (s *scanned) Labels(i int, b *labels.ScratchBuilder) labels.Labels {
	b.Reset()
	s.rawPairs(i, func(n, v string) { b.Add(n, v) })
	if s.series[i].unsorted {
		b.Sort()
	}
	return b.Labels() // copies: safe beyond the request
}

// Pairs calls f for each label of series i in name order: in place for a
// sorted series (nearly all), from a sorted copy otherwise.
func (s *scanned) Pairs(i int, f func(name, value string)) {
	if !s.series[i].unsorted {
		s.rawPairs(i, f)
		return
	}
	s.Labels(i, &labels.ScratchBuilder{}).Range(func(l labels.Label) { f(l.Name, l.Value) })
}

// Skip reports whether series i is forwarded as it came, never repaired:
// Prometheus' receiver would not store it (see checkLabels).
func (s *scanned) Skip(i int) bool { return s.series[i].invalid }

// Seeds of SeriesKey's hashes: its keys never meet the pipeline's own
// (relabel.seriesKey), which hash the pairs with xxhash, and RW 1.0's wire
// bytes and RW 2.0's gathered strings never meet either.
const (
	rawKeySeed = 0x243f6a8885a308d3
	symKeySeed = 0xa4093822299f31d0
)

// SeriesKey hashes an RW 1.0 series' label fields as they are on the wire
// (contiguous: nearly always) into 128 bits: the bytes name the label set. An RW
// 2.0 series' refs name symbols of its request only: its key hashes the
// strings they name (symbolsKey).
func (s *scanned) SeriesKey(i int) (h1, h2 uint64, ok bool) {
	si := &s.series[i]
	if s.proto == ProtoV2 {
		return s.symbolsKey(si)
	}
	if si.labSplit || si.lab.end == si.lab.off {
		return 0, 0, false
	}
	return key128(s.raw[si.lab.off:si.lab.end], rawKeySeed)
}

// symbolsKey is SeriesKey for RW 2.0: the series' label names and values in
// wire order, each after its length (so that the bytes name one label set,
// whatever its strings hold), gathered from the symbols table in one buffer
// and hashed, as RW 1.0's wire bytes are. A label set has one key in
// every request, whatever its references. It costs about half of what the
// pipeline's key of the series' pairs did (relabel.seriesKey: a call per
// label, two hashes fed as it goes): 2,500 instructions for a LiteLLM
// series, 4,500 before.
func (s *scanned) symbolsKey(si *seriesIdx) (h1, h2 uint64, ok bool) {
	buf := s.keyBuf[:0]
	for _, r := range s.refs[si.l0:si.l1] {
		sp := s.syms[r]
		buf = binary.AppendUvarint(buf, uint64(sp.end-sp.off))
		buf = append(buf, s.raw[sp.off:sp.end]...)
	}
	s.keyBuf = buf
	return key128(buf, symKeySeed)
}

// key128 is a 128-bit hash of b (XXH3-128), in one pass: a LiteLLM series'
// labels (about 450 bytes) in about 50 ns, where xxhash-64 twice, with two
// seeds, took about 135 (the decision cache takes a key for every series
// it may change: hundreds a request).
func key128(b []byte, seed uint64) (h1, h2 uint64, ok bool) {
	h := xxh3.Hash128Seed(b, seed)
	return h.Lo, h.Hi, true
}

// sortLabels records, for every valid series whose labels are out of order
// on the wire, its labels sorted: it is re-encoded so, and a strict upstream
// gets a valid series. It returns how many it sorted.
func (s *scanned) sortLabels() int {
	n := 0
	var sb labels.ScratchBuilder
	for i := range s.series {
		if s.series[i].unsorted {
			s.SetLabels(i, s.Labels(i, &sb))
			n++
		}
	}
	return n
}

// rawPairs calls f for each label of series i in wire order, in place.
func (s *scanned) rawPairs(i int, f func(name, value string)) {
	si := &s.series[i]
	if s.proto == ProtoV2 {
		refs := s.refs[si.l0:si.l1]
		for j := 0; j+1 < len(refs); j += 2 {
			f(s.str(s.syms[refs[j]]), s.str(s.syms[refs[j+1]]))
		}
		return
	}
	for j := si.l0; j+1 < si.l1; j += 2 {
		f(s.str(s.lbls[j]), s.str(s.lbls[j+1]))
	}
}

// The Batch of a scanned request: edits are recorded, and applied by encode.

func (s *scanned) HasHistograms(i int) bool { return s.series[i].hasHist }

func (s *scanned) Samples(i int) []series.Sample {
	si := &s.series[i]
	field := protowire.Number(v1SeriesSamples)
	if s.proto == ProtoV2 {
		field = v2SeriesSamples
	}
	// Samples of all series share one pooled arena; the returned slice is
	// valid for the request.
	start := len(s.arena)
	b := s.raw[:si.body.end]
	labAt, labEnd := si.labelRun()
	for off := int(si.body.off); off < len(b); {
		if off == labAt {
			off = labEnd
			continue
		}
		num, typ, val, end := next(b, off) // well-formed: checked by scan
		off = end
		if num != field || typ != protowire.BytesType {
			continue
		}
		var p series.Sample
		sb := b[:val.end]
		for so := int(val.off); so < len(sb); {
			n, t, v, e := next(sb, so)
			so = e
			switch {
			case n == sampleValue && t == protowire.Fixed64Type:
				u, _ := protowire.ConsumeFixed64(sb[v.off:v.end])
				p.V = math.Float64frombits(u)
			case n == sampleTimestamp && t == protowire.VarintType:
				u, _ := protowire.ConsumeVarint(sb[v.off:v.end])
				p.T = int64(u)
			case n == sampleStartTimestamp && t == protowire.VarintType && s.proto == ProtoV2:
				u, _ := protowire.ConsumeVarint(sb[v.off:v.end])
				p.ST = int64(u)
			}
		}
		s.arena = append(s.arena, p)
	}
	return s.arena[start:len(s.arena):len(s.arena)]
}

func (s *scanned) edit(i int) *seriesEdit {
	if len(s.edits) == 0 {
		s.edits = slices.Grow(s.edits, len(s.series))[:len(s.series)]
	}
	return &s.edits[i]
}

func (s *scanned) SetLabels(i int, ls labels.Labels) {
	e := s.edit(i)
	if !e.relabeled && !e.merged {
		s.nEdits++
	}
	e.ls, e.relabeled = ls, true
}

func (s *scanned) AppendSeries(ls labels.Labels, smp []series.Sample) {
	s.extra = append(s.extra, extraSeries{ls: ls, samples: smp})
}

func (s *scanned) Exemplars(idx []int) int {
	field := protowire.Number(v1SeriesExemplars)
	if s.proto == ProtoV2 {
		field = v2SeriesExemplars
	}
	n := 0
	for _, i := range idx {
		if !s.series[i].hasEx {
			continue // the scan saw no exemplars field: nothing to count (most series)
		}
		_ = walk(s.raw, s.series[i].body, func(num protowire.Number, _ protowire.Type, _ span) error {
			if num == field {
				n++
			}
			return nil
		})
	}
	return n
}

func (s *scanned) SetSamples(i int, smp []series.Sample, srcs []int) {
	e := s.edit(i)
	if !e.relabeled && !e.merged {
		s.nEdits++
	}
	e.samples, e.srcs, e.merged = smp, srcs, true
}

func (s *scanned) Drop(i int) {
	if len(s.drop) < len(s.series) {
		s.drop = slices.Grow(s.drop[:0], len(s.series))[:len(s.series)] // cleared by reset
	}
	if !s.drop[i] {
		s.drop[i] = true
		s.nDrop++
	}
}

func (s *scanned) changed() bool {
	return s.nEdits > 0 || s.nDrop > 0 || len(s.extra) > 0
}

// forwarded counts the series left after drops, and the appended ones.
func (s *scanned) forwarded() int {
	return len(s.series) - s.nDrop + len(s.extra)
}

// encode appends the spliced request to dst: every top-level field in its
// original order, unchanged series as their original bytes, changed ones
// re-encoded; then, for RW 2.0, the symbols the rewrites added (a repeated
// field's elements may come anywhere in a message; they are appended to the
// table in order, so existing references stay valid). It records the runs
// it copied as they came (kept), for compressSpliced. It leaves s.raw as it
// is (the handler uses encodeForward, which does not).
func (s *scanned) encode(dst []byte) []byte {
	blank, whole := s.blanking()
	if blank && whole {
		// As encodeForward makes it, without touching s.raw.
		dst = slices.Grow(dst, len(s.raw)+len(s.raw)/8)
		base := len(dst)
		dst = append(dst, s.raw...)
		s.blankInPlace(dst[base:])
		return s.appendTail(dst)
	}
	return s.encodeCopy(dst, blank)
}

// encodeForward is encode for the handler: it returns the output as head
// followed by tail, without copying the request when it can. When every
// series the repair changes can be blanked (see blankTag), it blanks them in
// s.raw itself, the handler's decoded buffer, which nothing reads after
// encoding but the forwarding, and returns it as head, with what goes after
// it (the changed series again, RW 2.0's new symbols) appended to dst as
// tail: a request's worth of copying (4% of the clean row's CPU) and of
// memory per request in flight saved. Otherwise head is nil and tail is the
// whole output, as encode makes it. blank and whole are what blanking
// says (the handler asks it first, to pick the buffer). Call it once per
// scan.
func (s *scanned) encodeForward(dst []byte, blank, whole bool) (head, tail []byte) {
	if blank && whole {
		s.blankInPlace(s.raw)
		return s.raw, s.appendTail(dst[:0])
	}
	return nil, s.encodeCopy(dst, blank)
}

// blankInPlace blanks, in out (the request's bytes: s.raw or a copy), the
// tag of every series the repair drops or changes, and records them (holes,
// blanked, the moved series) for appendTail and compressSpliced. The
// caller checked (blanking) that each can be.
func (s *scanned) blankInPlace(out []byte) {
	s.kept, s.holes, s.moved = s.kept[:0], s.holes[:0], s.moved[:0]
	s.inPlace, s.blanked = true, 0
	for i := range s.series {
		dropped, changed := s.changedAt(i)
		if !changed {
			continue
		}
		if !dropped && s.nEdits > 0 && s.edits[i].patch {
			e := &s.edits[i]
			for k, pa := range s.vals[e.v0:e.v1] {
				binary.LittleEndian.PutUint64(out[pa.v:], math.Float64bits(e.samples[k].V))
				if pa.t == 0 {
					s.holes = appendRun(s.holes, int(pa.v), 8)
					continue
				}
				// The timestamp too, over a varint as long (sampleValues).
				n := len(protowire.AppendVarint(out[pa.t:pa.t], uint64(e.samples[k].T)))
				if pa.t < pa.v { // the holes in order (compressInPlace)
					s.holes = appendRun(appendRun(s.holes, int(pa.t), n), int(pa.v), 8)
				} else {
					s.holes = appendRun(appendRun(s.holes, int(pa.v), 8), int(pa.t), n)
				}
			}
			continue
		}
		fs := s.series[i].field
		out[fs.off] = blankTag
		s.holes = append(s.holes, int(fs.off))
		s.blanked += int(fs.end - fs.off)
		if !dropped {
			s.moved = append(s.moved, i)
		}
	}
}

// appendRun appends the n offsets from at on.
func appendRun(holes []int, at, n int) []int {
	for x := range n {
		holes = append(holes, at+x)
	}
	return holes
}

// appendTail appends what goes after the request's own fields: the series
// blanked in place and sent again (moved), the merged outputs appended, and
// RW 2.0's new symbols.
func (s *scanned) appendTail(dst []byte) []byte {
	var body []byte
	for _, i := range s.moved {
		body, _ = s.encodeSeries(body[:0], i, &s.edits[i])
		dst = protowire.AppendTag(dst, s.seriesField(), protowire.BytesType)
		dst = protowire.AppendBytes(dst, body)
	}
	for _, x := range s.extra {
		body = s.appendLabels(body[:0], x.ls)
		body = s.appendSamples(body, x.samples)
		dst = protowire.AppendTag(dst, s.seriesField(), protowire.BytesType)
		dst = protowire.AppendBytes(dst, body)
	}
	for _, sym := range s.newSyms {
		dst = protowire.AppendTag(dst, v2ReqSymbols, protowire.BytesType)
		dst = protowire.AppendString(dst, sym)
	}
	return dst
}

// encodeCopy is encode when not every change can be blanked: the request
// copied field by field, changed series cut out, re-encoded in their place
// or (when blank) blanked and moved.
func (s *scanned) encodeCopy(dst []byte, blank bool) []byte {
	// About the request's size: one growth, not a doubling series (which
	// copies, and leaves up to as much again unused in the pool).
	dst = slices.Grow(dst, len(s.raw)+len(s.raw)/8)
	base := len(dst)
	s.kept = s.kept[:0]
	var body []byte
	s.holes, s.inPlace, s.blanked = s.holes[:0], blank, 0
	s.moved = s.moved[:0] // edited series blanked in place, appended after the others
	for f, fs := range s.fields {
		i := int(s.isSer[f])
		if i < 0 {
			s.keep(fs, len(dst)-base)
			dst = append(dst, s.raw[fs.off:fs.end]...)
			continue
		}
		dropped := s.nDrop > 0 && s.drop[i]
		edited := s.nEdits > 0 && (s.edits[i].relabeled || s.edits[i].merged)
		if !dropped && !edited {
			s.keep(fs, len(dst)-base)
			dst = append(dst, s.raw[fs.off:fs.end]...)
			continue
		}
		// A changed series goes after the others, so only one whose label set
		// no later series of the request keeps as it came: one the repair
		// gave labels (SetLabels: a rewrite, a merged output in its first
		// source's slot, sorted labels) or a merged output of several
		// sources (in its genuine series' slot, with that series' labels),
		// whose label set's other series are changed too (the merge's
		// sources, the guard's collisions), not one
		// whose own samples were only trimmed (fences, the backlog split),
		// whose later series of the same label set would then come first:
		// out of order, and the receiver refuses the request.
		if blank && s.blankable(i, dropped) {
			s.holes = append(s.holes, int(fs.off))
			s.blanked += int(fs.end - fs.off)
			dst = append(dst, blankTag)
			s.keep(span{fs.off + 1, fs.end}, len(dst)-base)
			dst = append(dst, s.raw[fs.off+1:fs.end]...)
			if !dropped {
				s.moved = append(s.moved, i)
			}
			continue
		}
		s.inPlace = false // bytes cut out, or a series re-encoded in its place
		if dropped {
			continue
		}
		var pre int
		body, pre = s.encodeSeries(body[:0], i, &s.edits[i])
		at := len(dst)
		dst = protowire.AppendTag(dst, s.seriesField(), protowire.BytesType)
		dst = protowire.AppendBytes(dst, body)
		if pre > 0 {
			// Its labels as they came: a kept run, with the field's tag and
			// length when they came so too (the samples' length unchanged),
			// so that the run continues the one before it.
			bodyAt := len(dst) - len(body)
			if bytes.Equal(dst[at:bodyAt], s.raw[fs.off:s.series[i].body.off]) {
				s.keep(span{fs.off, s.series[i].body.off + uint32(pre)}, at-base)
			} else {
				s.keep(span{s.series[i].body.off, s.series[i].body.off + uint32(pre)}, bodyAt-base)
			}
		}
	}
	return s.appendTail(dst)
}

// Blanking. A series that the repair drops or changes is, by default, not
// cut out of the request but blanked in place: the one byte of its field's
// tag becomes blankTag, an unknown field that every protobuf decoder skips
// (Prometheus', Mimir's, VictoriaMetrics', gogo and protobuf-go alike: a
// message's unknown fields are skipped by their length), and a changed
// series goes again, re-encoded, after the others. Every other byte keeps
// its place, so the sender's compressed elements decode to the same bytes
// at the same offsets, and compressInPlace (snappysplice.go) reuses nearly
// all of them: only the elements that hold or copy a blanked tag, and the
// re-encoded series, are written anew. Cutting a series out instead moves everything after
// it, and the copies of the next series, which took their bytes from the
// one cut out, lose their source: the request is compressed in full. With
// every genuine 500 of a clean request held by the merge (one series in
// 16), that was a third of rwfix's CPU.
//
// What it costs is upstream bytes: the blanked series travel too, and the
// receiver skips them. encode blanks only when the changes are more than
// one per spliceMoveSpan bytes (fewer are cut out: compressSpliced points
// the copies across them again, for less, adding nothing) and at most
// s.blank of the request's bytes (the handler's default: DefaultBlankShare;
// rwfix's --upstream.max-blanked-share); beyond, a request of many repairs
// is cut and compressed in full as before.
//
// blankTag is field 15, length-delimited: unused by RW 1.0's WriteRequest
// (1 timeseries, 2 reserved, 3 metadata), RW 2.0's Request (1-3 reserved,
// 4 symbols, 5 timeseries) and Mimir's and Cortex' (2 source, 3 metadata,
// 4-5 RW 2.0, 1000 and up), and the largest field whose tag is one byte,
// as the series' own tag is (a sender that wrote it longer is cut as before).
const blankTag = 15<<3 | 2

// DefaultBlankShare is the default of the largest share of a request's
// bytes that may be blanked series (see blankTag).
const DefaultBlankShare = 0.25

// seriesTag is the one-byte tag of the request's series field.
func (s *scanned) seriesTag() byte {
	return byte(s.seriesField())<<3 | 2
}

// blanking reports whether encode blanks the series it drops or changes:
// they are at most s.blank of the request's bytes.
func (s *scanned) blanking() (blank, whole bool) {
	if s.blank <= 0 || (s.nEdits == 0 && s.nDrop == 0) {
		return false, false
	}
	n, k, patched := 0, 0, 0
	whole = true
	s.vals = s.vals[:0]
	for i := range s.series {
		if dropped, changed := s.changedAt(i); changed {
			fs := s.series[i].field
			k++
			if s.patchable(i, dropped) {
				// A change the walk rewrites, with no bytes added; but
				// encodeCopy (not whole) blanks it and sends it again
				// when it can be blanked.
				if s.blankable(i, dropped) {
					patched += int(fs.end - fs.off)
				}
				continue
			}
			n += int(fs.end - fs.off)
			whole = whole && s.blankable(i, dropped)
		}
	}
	if !whole {
		n += patched
	}
	// A few changes (at most one per spliceMoveSpan bytes) are cut out:
	// compressSpliced points the few copies that cross them again, for
	// less than the walk of compressInPlace costs, and no bytes are added
	// (BenchmarkSnappySplice: changed=1 and changed=0.5%).
	blank = k*spliceMoveSpan > len(s.raw) && float64(n) <= s.blank*float64(len(s.raw))
	return blank, blank && whole
}

// changedAt reports whether series i is dropped, and whether it is dropped
// or changed (relabeled or merged): whether encode must not send it as it
// came.
func (s *scanned) changedAt(i int) (dropped, changed bool) {
	dropped = s.nDrop > 0 && s.drop[i]
	return dropped, dropped || (s.nEdits > 0 && (s.edits[i].relabeled || s.edits[i].merged))
}

// patchable reports whether changed series i keeps its place with only its
// sample values (and timestamps) written anew, and if so records where they
// are (e.patch, s.vals[e.v0:e.v1]). That is a merged output in the slot of
// its genuine series: relabel's writeEmits puts it there when the output's
// timestamps are the slot's own (a sum finalized at once, the repair-heavy
// steady state), or in its first source's slot otherwise, which for an
// output with one source is the genuine series' too (a lone 500 sending
// the sample the birth wait held from the scrape before: the clean steady
// state). It is patchable when
//
//   - its labels are the slot's own, as they came (sorted on the wire);
//   - it has as many samples as the slot, in order, each slot sample with
//     exactly one value field, a fixed64, whose 8 bytes take the new value
//     (an explicit +0 decodes as the +0 that appendSamples leaves out), and
//     either the slot sample's timestamp or one whose varint is exactly as
//     long as the slot's (its bytes take it: any timestamp of the last 40
//     years is 6 bytes); RW 2.0: the slot sample's start timestamp;
//   - its other sources carry no exemplars (an output carries its sources'
//     exemplars: in place only the slot's own stay).
//
// Everything else of the slot (its exemplars, RW 2.0 metadata, unknown
// fields) is what encodeSeries would copy anyway. A patched series is not
// blanked and sent again after the others: its bytes stay where they are,
// and the sender's compressed elements around the 8 changed bytes of each
// sample are reused (compressInPlace). Anything else is blanked and moved,
// or re-encoded, as before.
func (s *scanned) patchable(i int, dropped bool) bool {
	if dropped || s.nEdits == 0 {
		return false
	}
	e := &s.edits[i]
	e.patch = false
	si := &s.series[i]
	if !e.merged || si.unsorted || si.hasHist || (e.relabeled && !s.sameLabels(i, e.ls)) {
		return false
	}
	v2 := s.proto == ProtoV2
	field := protowire.Number(v1SeriesSamples)
	if v2 {
		field = v2SeriesSamples
	}
	v0 := len(s.vals)
	if !s.sampleValues(si, e.samples, field, v2) {
		s.vals = s.vals[:v0]
		return false
	}
	for _, j := range e.srcs {
		if j != i && s.series[j].hasEx {
			s.vals = s.vals[:v0]
			return false
		}
	}
	e.patch, e.v0, e.v1 = true, int32(v0), int32(len(s.vals))
	return true
}

// sampleValues appends to s.vals the offset of each of si's samples' value,
// and of its timestamp when want's differs, when they can take want's
// samples in order (see patchable: one fixed64 value field each, a
// timestamp that is want's or a varint as long as want's; RW 2.0, v2:
// want's start timestamps); else it reports false.
func (s *scanned) sampleValues(si *seriesIdx, want []series.Sample, field protowire.Number, v2 bool) bool {
	k := 0
	b := s.raw[:si.body.end]
	labAt, labEnd := si.labelRun()
	for off := int(si.body.off); off < len(b); {
		if off == labAt {
			off = labEnd
			continue
		}
		num, typ, val, end := next(b, off) // well-formed: checked by scan
		off = end
		if num != field {
			continue
		}
		if typ != protowire.BytesType || k >= len(want) {
			return false
		}
		var t, st int64
		at, tAt, tEnd := -1, 0, 0
		sb := b[:val.end]
		for so := int(val.off); so < len(sb); {
			n, wt, v, e := next(sb, so)
			so = e
			switch n {
			case sampleValue:
				if wt != protowire.Fixed64Type || at >= 0 {
					return false
				}
				at = int(v.off)
			case sampleTimestamp:
				if wt == protowire.VarintType {
					u, _ := protowire.ConsumeVarint(sb[v.off:v.end])
					t, tAt, tEnd = int64(u), int(v.off), int(v.end)
				}
			case sampleStartTimestamp:
				if wt == protowire.VarintType && v2 {
					u, _ := protowire.ConsumeVarint(sb[v.off:v.end])
					st = int64(u)
				}
			}
		}
		p := want[k]
		if at < 0 || (v2 && st != p.ST) {
			return false
		}
		pa := patchAt{v: uint32(at)}
		if t != p.T {
			// tAt > 0: a timestamp field the decoder takes (the last one);
			// none (a 0) has no bytes to write into.
			if tAt == 0 || protowire.SizeVarint(uint64(p.T)) != tEnd-tAt {
				return false
			}
			pa.t = uint32(tAt)
		}
		s.vals = append(s.vals, pa)
		k++
	}
	return k == len(want)
}

// patchAt is where blankInPlace writes a patched sample (see patchable):
// its value's 8 bytes at v, and its timestamp's varint at t (0: the
// timestamp is the slot's own).
type patchAt struct{ v, t uint32 }

// blankable reports whether changed series i can be blanked: its tag is
// one byte, and it is dropped, was given labels, or is a merged output of
// more than one source. A series whose samples were only trimmed (fences,
// the backlog split: SetSamples with itself as its one source) is
// re-encoded in its place instead: see encodeCopy. A merged output with
// other sources keeps its slot's labels when the slot is its genuine
// series' (relabel's writeEmits), but every series of its label set in the
// request is one of its sources (relabel's joinUnchanged), changed too, so
// none follows it unchanged; without this, one sum that cannot be written
// in place (the genuine series' +0 has no value bytes on the wire) sent the
// whole request through encodeCopy and compressSpliced. But a series with
// histograms is never a merge source (relabel: joinUnchanged, decide), and
// a series whose labels came unsorted is given them sorted (sortLabels)
// whatever follows it: a series of its label set later in the request, not
// dropped, keeps it in its place (twinAfter).
func (s *scanned) blankable(i int, dropped bool) bool {
	if s.raw[s.series[i].field.off] != s.seriesTag() {
		return false
	}
	if dropped {
		return true
	}
	if !s.edits[i].relabeled && len(s.edits[i].srcs) <= 1 {
		return false
	}
	if unsorted := s.series[i].unsorted; unsorted || s.c.histograms > 0 {
		return !s.twinAfter(i, !unsorted)
	}
	return true
}

// twinAfter reports whether a series after changed series i that is not
// dropped (and, when hist, has histograms) has series i's (new) labels:
// moved after the others, series i's samples could follow that series',
// out of order for the receiver.
func (s *scanned) twinAfter(i int, hist bool) bool {
	var sb labels.ScratchBuilder
	ls := s.edits[i].ls
	if !s.edits[i].relabeled {
		ls = s.Labels(i, &sb)
	}
	for j := i + 1; j < len(s.series); j++ {
		if hist && !s.series[j].hasHist {
			continue
		}
		if s.nDrop > 0 && s.drop[j] {
			continue
		}
		if s.nEdits > 0 && s.edits[j].relabeled {
			// Changed too, but maybe kept in its place (re-encoded):
			// its new labels count.
			if labels.Equal(s.edits[j].ls, ls) {
				return true
			}
			continue
		}
		if s.series[j].unsorted {
			if labels.Equal(s.Labels(j, &sb), ls) {
				return true
			}
		} else if s.sameLabels(j, ls) {
			return true
		}
	}
	return false
}

// keptSpan is a run of the request that encode copied as it came:
// raw[raw:raw+n] is at out in what encode appended.
type keptSpan struct{ raw, out, n uint32 }

// keep records that encode copies field fs of raw to offset out of its
// output, extending the last run when the copy continues it.
func (s *scanned) keep(fs span, out int) {
	if k := len(s.kept) - 1; k >= 0 && s.kept[k].raw+s.kept[k].n == fs.off && int(s.kept[k].out+s.kept[k].n) == out {
		s.kept[k].n += fs.end - fs.off
		return
	}
	s.kept = append(s.kept, keptSpan{raw: fs.off, out: uint32(out), n: fs.end - fs.off})
}

func (s *scanned) seriesField() protowire.Number {
	if s.proto == ProtoV2 {
		return v2ReqSeries
	}
	return v1ReqSeries
}

// appendLabels appends the labels field(s) of a series: RW 2.0 references
// (adding symbols as needed), or RW 1.0 label messages.
func (s *scanned) appendLabels(dst []byte, ls labels.Labels) []byte {
	if s.proto == ProtoV2 {
		packed := s.scratch[:0]
		ls.Range(func(l labels.Label) {
			packed = protowire.AppendVarint(packed, uint64(s.symbol(l.Name)))
			packed = protowire.AppendVarint(packed, uint64(s.symbol(l.Value)))
		})
		dst = protowire.AppendTag(dst, v2SeriesRefs, protowire.BytesType)
		dst = protowire.AppendBytes(dst, packed)
		s.scratch = packed
		return dst
	}
	ls.Range(func(l labels.Label) {
		n := protowire.SizeTag(v1LabelName) + protowire.SizeBytes(len(l.Name)) +
			protowire.SizeTag(v1LabelValue) + protowire.SizeBytes(len(l.Value))
		dst = protowire.AppendTag(dst, v1SeriesLabels, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(n))
		dst = protowire.AppendTag(dst, v1LabelName, protowire.BytesType)
		dst = protowire.AppendString(dst, l.Name)
		dst = protowire.AppendTag(dst, v1LabelValue, protowire.BytesType)
		dst = protowire.AppendString(dst, l.Value)
	})
	return dst
}

// appendSamples appends sample messages (RW 2.0: with start timestamps).
func (s *scanned) appendSamples(dst []byte, samples []series.Sample) []byte {
	field := protowire.Number(v1SeriesSamples)
	if s.proto == ProtoV2 {
		field = v2SeriesSamples
	}
	for _, p := range samples {
		smp := s.scratch[:0]
		if v := math.Float64bits(p.V); v != 0 { // +0 left out, as the senders' (gogo) encoders do
			smp = protowire.AppendTag(smp, sampleValue, protowire.Fixed64Type)
			smp = protowire.AppendFixed64(smp, v)
		}
		if p.T != 0 {
			smp = protowire.AppendTag(smp, sampleTimestamp, protowire.VarintType)
			smp = protowire.AppendVarint(smp, uint64(p.T))
		}
		if p.ST != 0 && s.proto == ProtoV2 {
			smp = protowire.AppendTag(smp, sampleStartTimestamp, protowire.VarintType)
			smp = protowire.AppendVarint(smp, uint64(p.ST))
		}
		dst = protowire.AppendTag(dst, field, protowire.BytesType)
		dst = protowire.AppendBytes(dst, smp)
		s.scratch = smp
	}
	return dst
}

// encodeSeries re-encodes series i: its (new) labels first, then every other
// field byte for byte; for a merged output, the merged samples, and the
// exemplars of every source instead of its own. When its labels are
// unchanged and came first and in order (as every sender writes them), they
// are its label fields as they came, and pre is their length: dst[:pre] is
// s.raw[body.off:body.off+pre] (encode keeps them as a run of the request,
// for compressSpliced); else pre is 0.
func (s *scanned) encodeSeries(dst []byte, i int, e *seriesEdit) (_ []byte, pre int) {
	ls, relabeled, merged := e.ls, e.relabeled, e.merged
	v2 := s.proto == ProtoV2
	refsField, samplesField, exemplarsField := protowire.Number(v1SeriesLabels), protowire.Number(v1SeriesSamples), protowire.Number(v1SeriesExemplars)
	if v2 {
		refsField, samplesField, exemplarsField = v2SeriesRefs, v2SeriesSamples, v2SeriesExemplars
	}
	if pre = s.leadingLabels(i); pre > 0 && (!relabeled || s.sameLabels(i, ls)) {
		si := &s.series[i]
		dst = append(dst, s.raw[si.body.off:si.body.off+uint32(pre)]...)
	} else {
		pre = 0
		if !relabeled {
			ls = s.Labels(i, &labels.ScratchBuilder{})
		}
		dst = s.appendLabels(dst, ls)
	}
	copyFields := func(j int, keep func(protowire.Number) bool) {
		si := &s.series[j]
		for off := int(si.body.off); off < int(si.body.end); {
			num, _, _, end := next(s.raw[:si.body.end], off) // well-formed: checked by scan
			if keep(num) {
				dst = append(dst, s.raw[off:end]...)
			}
			off = end
		}
	}
	if !merged {
		copyFields(i, func(n protowire.Number) bool { return n != refsField })
		return dst, pre
	}
	dst = s.appendSamples(dst, e.samples)
	for _, j := range e.srcs {
		copyFields(j, func(n protowire.Number) bool { return n == exemplarsField })
	}
	// The slot's own other fields (RW 2.0 metadata, unknown fields), but not
	// its labels, samples or exemplars.
	copyFields(i, func(n protowire.Number) bool { return n != refsField && n != samplesField && n != exemplarsField })
	return dst, pre
}

// leadingLabels returns the length of series i's label fields when they are
// its first fields, one after another, and sorted; else 0.
func (s *scanned) leadingLabels(i int) int {
	si := &s.series[i]
	if si.unsorted {
		return 0
	}
	field := protowire.Number(v1SeriesLabels)
	if s.proto == ProtoV2 {
		field = v2SeriesRefs
	} else if at, end := si.labelRun(); at >= 0 && !si.labSplit {
		// RW 1.0, its label fields in one run (as the scan found them):
		// leading, or not.
		if at != int(si.body.off) {
			return 0
		}
		return end - at
	}
	b := s.raw[:si.body.end]
	off := int(si.body.off)
	for off < len(b) {
		num, _, _, end := next(b, off) // well-formed: checked by scan
		if num != field {
			break
		}
		off = end
	}
	for o := off; o < len(b); { // and no label field after them
		num, _, _, end := next(b, o)
		if num == field {
			return 0
		}
		o = end
	}
	return off - int(si.body.off)
}

// sameLabels reports whether ls is series i's label set (it is sorted: see
// leadingLabels).
func (s *scanned) sameLabels(i int, ls labels.Labels) bool {
	si := &s.series[i]
	if ls.Len() != int(si.l1-si.l0)/2 {
		return false
	}
	p, j, same := seriesPairs{s, si}, 0, true
	ls.Range(func(l labels.Label) {
		if same {
			n, v := p.pair(j)
			same = n == l.Name && v == l.Value
			j++
		}
	})
	return same
}
