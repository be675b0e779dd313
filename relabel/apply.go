package relabel

import (
	"encoding/binary"
	"math"
	"slices"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/prometheus/model/labels"
)

// The batch-level decisions: which series of a request the rules change,
// which rewrites would collide (the collision guard), how merge sources group
// into outputs, and what the merge sends. They see a request only through
// Batch, which package remotewrite implements for both protocols over its
// in-place index (and over the generated structs, the reference path).

// Batch is one decoded request as the repair sees it. Labels are read in
// place (Getter, Pairs: valid only during the call); changes are recorded by
// the implementation and applied when it re-encodes the request. An alias of
// an unnamed interface: package remotewrite names the same type without
// importing this package.
type Batch = interface {
	Len() int
	// Getter reads one label of series i without allocating.
	Getter(i int) interface{ Get(name string) string }
	// Labels builds series i's labels (a copy, safe to keep).
	Labels(i int, b *labels.ScratchBuilder) labels.Labels
	// Pairs calls f for each label of series i, in order, in place.
	Pairs(i int, f func(name, value string))
	HasHistograms(i int) bool
	// Exemplars counts the exemplars the series idx carry.
	Exemplars(idx []int) int
	Samples(i int) []Sample
	SetLabels(i int, ls labels.Labels)
	// SetSamples puts a merged output's samples into slot i; its exemplars
	// become those of every source in srcs.
	SetSamples(i int, s []Sample, srcs []int)
	// AppendSeries adds a merged output after every other series.
	AppendSeries(ls labels.Labels, s []Sample)
	Drop(i int)
	// Skip reports whether series i is forwarded as it came, never repaired
	// (the upstream would not store it anyway: no metric name, a duplicate
	// label name, invalid UTF-8).
	Skip(i int) bool
	// SeriesKey is a 128-bit key of series i's label set that the batch
	// can compute cheaply (RW 1.0: a hash of the label fields' bytes), with
	// seeds of its own (never those of seriesKey), or ok false. A key names
	// one label set; one label set may have several keys.
	SeriesKey(i int) (h1, h2 uint64, ok bool)
}

// Result sums up what Apply did to a request. Each series counts once in
// Repaired and Dropped, and may count in Merged too: a None series summed
// with a genuine 500 is repaired and merged; the genuine one, merged.
type Result = struct {
	Changed    bool // the request must be re-encoded
	Repaired   int  // series whose labels the rules changed, kept (merged or not)
	Dropped    int  // series dropped by a rule
	Collisions int  // rewrites undone by the collision guard or a full merge state
	Merged     int  // series summed with another series (sources of an output that has several)
	// Example is one series the rules changed: its labels before and
	// after (after empty: dropped); both empty when none changed.
	Example [2]labels.Labels
}

// MergeRun is what a request owes the merge state after Apply: the retries
// to send in a request of their own, and Done once every upstream has
// answered. ok: every upstream took the request with the sender's series.
// taken[i]: how many of Retries()[i].Samples, from the first, every upstream
// has settled — accepted, or refused for good (a 4xx to that sample alone:
// the upstream has it, or never will take it); a missing entry counts 0.
// What was not taken stays queued and goes again, as retries.
type MergeRun = interface {
	Done(ok bool, taken []int)
	Retries() []Emit
	// Sequential reports whether the retries must reach the upstream before
	// the request: it carries, raw, the label set of a retired output whose
	// queue is among them (see retire.go), and a raw sample there before
	// them would make them out of order.
	Sequential() bool
}

// hashSeries hashes series i's labels from its pairs, as hashLabels hashes
// a labels.Labels: equal label sets hash alike without building either.
// h is scratch space, reused from series to series (it escapes through
// Pairs).
func hashSeries(b Batch, i int, h *pairHasher) uint64 {
	h.reset()
	b.Pairs(i, h.addFn)
	return h.sum()
}

// edit is what the Repairer decided for one series of a batch.
type edit struct {
	orig, out labels.Labels
	idx       int32 // a series index of the request (int32: the edit stays 56 bytes)
	keep      bool
	merge     bool      // the output goes through the Merger
	hash      uint64    // of out (labels.Labels.Hash), when merged; the collision guard's own otherwise
	d         *decision // the cached decision it came from; nil without the cache
}

// pairHasher hashes a label set from its name/value pairs, so that a
// series' wire labels and a labels.Labels hash alike without building
// either. It buffers, to feed xxhash in few large writes.
type pairHasher struct {
	d   xxhash.Digest
	buf [512]byte
	n   int
	// keyed: a decisionCache key — names and values length-prefixed (see
	// addKeyed), also hashed into d2 with another seed.
	keyed bool
	d2    xxhash.Digest
	addFn func(name, value string) // h.add, made once: a method value passed on allocates
}

// newPairHasher returns a hasher to pass to Batch.Pairs, series after series.
func newPairHasher() *pairHasher {
	h := &pairHasher{}
	h.addFn = h.add
	return h
}

// seed2 is the seed of the second hash of decisionCache's keys.
const seed2 = 0x9e3779b97f4a7c15

func (h *pairHasher) reset() { h.d.Reset(); h.n = 0; h.keyed = false }

func (h *pairHasher) write(b []byte) {
	_, _ = h.d.Write(b)
	if h.keyed {
		_, _ = h.d2.Write(b)
	}
}

func (h *pairHasher) add(name, value string) {
	if h.keyed {
		h.addKeyed(name, value)
		return
	}
	if h.n+len(name)+len(value)+2 > len(h.buf) {
		h.write(h.buf[:h.n])
		h.n = 0
		if len(name)+len(value)+2 > len(h.buf) {
			h.write([]byte(name))
			h.write([]byte{0xff})
			h.write([]byte(value))
			h.write([]byte{0xff})
			return
		}
	}
	h.n += copy(h.buf[h.n:], name)
	h.buf[h.n] = 0xff
	h.n++
	h.n += copy(h.buf[h.n:], value)
	h.buf[h.n] = 0xff
	h.n++
}

// addKeyed is add for decisionCache's keys, which no comparison of labels
// backs: each name and value goes with its length, so that the bytes name
// one label set even where a value holds the 0xff separator (possible with
// validate_utf8 off).
func (h *pairHasher) addKeyed(name, value string) {
	if h.n+len(name)+len(value)+2*binary.MaxVarintLen64 > len(h.buf) {
		h.write(h.buf[:h.n])
		h.n = 0
	}
	for _, str := range [2]string{name, value} {
		if h.n+binary.MaxVarintLen64+len(str) > len(h.buf) {
			h.write(h.buf[:h.n])
			h.n = 0
			var l [binary.MaxVarintLen64]byte
			h.write(l[:binary.PutUvarint(l[:], uint64(len(str)))])
			h.write([]byte(str))
			continue
		}
		h.n += binary.PutUvarint(h.buf[h.n:], uint64(len(str)))
		h.n += copy(h.buf[h.n:], str)
	}
}

func (h *pairHasher) sum() uint64 {
	h.write(h.buf[:h.n])
	h.n = 0
	return h.d.Sum64()
}

func hashLabels(ls labels.Labels) uint64 {
	var h pairHasher
	h.reset()
	ls.Range(func(l labels.Label) { h.add(l.Name, l.Value) })
	return h.sum()
}

// guardCollisions undoes every rewrite whose output label set is also the
// label set of another series in the same batch, so that rwfix never sends
// two different values for one series at one timestamp. The undone series is
// forwarded with its original labels: nothing is lost or corrupted, it is
// just not repaired. It returns how many rewrites it undid.
//
// Undoing a rewrite can in theory make the original labels collide with
// another rewrite's output, so it repeats until nothing collides; every round
// undoes at least one rewrite, so it ends.
func guardCollisions(edits []edit, b Batch, dropped *dropSet) int {
	undone := 0
	for {
		// Only rewrites outside the merge can collide; most batches have none.
		if !slices.ContainsFunc(edits, func(e edit) bool { return !e.merge && e.keep && !labels.Equal(e.out, e.orig) }) {
			return undone
		}
		outs := make(map[uint64][]int, len(edits)) // hash -> positions of live rewrites
		skip := make(map[int]bool, len(edits))     // series that are rewritten or dropped
		for _, i := range dropped.members() {
			skip[i] = true
		}
		for k := range edits {
			e := &edits[k]
			switch {
			case e.merge:
				// A merged output is one series; its slot carries it. Other
				// rewrites must not land on it either.
				if !dropped.has(int(e.idx)) {
					h := hashLabels(e.out)
					outs[h] = append(outs[h], k)
				}
				skip[int(e.idx)] = true
			case !e.keep:
				skip[int(e.idx)] = true
			case !labels.Equal(e.out, e.orig):
				skip[int(e.idx)] = true
				e.hash = hashLabels(e.out)
				outs[e.hash] = append(outs[e.hash], k)
			}
		}
		if len(outs) == 0 {
			return undone
		}
		clash := map[int]bool{}
		// Rewrites that land on one another.
		for _, ks := range outs {
			for a := 0; a < len(ks); a++ {
				for b := a + 1; b < len(ks); b++ {
					// One series that the request carries several times (a
					// sender catching up writes one TimeSeries per sample) is
					// one series: its rewrites do not collide.
					if labels.Equal(edits[ks[a]].out, edits[ks[b]].out) && !labels.Equal(edits[ks[a]].orig, edits[ks[b]].orig) {
						clash[ks[a]], clash[ks[b]] = true, true
					}
				}
			}
		}
		// Rewrites that land on a series forwarded with its own labels
		// (untouched, or whose rewrite was undone in an earlier round).
		var sb labels.ScratchBuilder
		h := newPairHasher()
		for i := range b.Len() {
			if skip[i] || b.Skip(i) {
				continue
			}
			for _, k := range outs[hashSeries(b, i, h)] {
				if labels.Equal(edits[k].out, b.Labels(i, &sb)) {
					clash[k] = true
				}
			}
		}
		if len(clash) == 0 {
			return undone
		}
		progress := false
		for k := range clash {
			if edits[k].merge {
				continue // a merged output stays; the rewrite landing on it is undone
			}
			edits[k].out = edits[k].orig
			undone++
			progress = true
		}
		if !progress {
			return undone
		}
	}
}

// Apply runs the pipeline over one request, in place: rewritten labels,
// dropped series, merged sources (and merged outputs appended), rewrites that
// would collide undone. Package remotewrite calls it through its Repairer
// interface; b is its view of the decoded request (either protocol). The
// returned run, when not nil, must be told once every upstream has answered.
func (p *Pipeline) Apply(b Batch, part string) (res Result, run MergeRun) {
	edits, undone := p.decide(b)
	res.Collisions = undone
	var tx MergeTx
	// What the merge state still has to send goes out whatever the policy
	// (a reload may have switched it off since: see retire.go).
	if (p.merges() && len(edits) > 0) || p.MergePending() {
		tx = p.BeginMerge(part)
	}
	fenced := p.merger != nil && p.merger.Fenced()
	if len(edits) == 0 && tx == nil && !fenced {
		return res, nil
	}
	drop := newDropSet(b.Len())
	appended, handed := 0, 0 // handed: series whose slot the merge changed
	if tx != nil {
		// Whatever happens below, the samples Collect put in flight must be
		// released, or their output would never send again.
		defer func() {
			if r := recover(); r != nil {
				tx.Done(false, nil)
				panic(r)
			}
		}()
		mr := &mergeRun{tx: tx}
		var unmerged int
		handed, res.Merged, unmerged, appended, mr.retries = p.mergeGroups(tx, part, edits, b, drop)
		res.Collisions += unmerged
		run = mr
	}
	res.Collisions += guardCollisions(edits, b, drop)
	for _, e := range edits {
		switch {
		case !e.keep:
			drop.add(int(e.idx))
			res.Dropped++
		case labels.Equal(e.out, e.orig):
			// Unchanged (a genuine series the merge tracks), or undone by the
			// guard or a full merge state: forwarded as it came.
			continue
		case e.merge:
			// Handled by mergeGroups.
			res.Repaired++
		default:
			res.Repaired++
			b.SetLabels(int(e.idx), e.out)
		}
		if res.Example[0].IsEmpty() {
			res.Example = [2]labels.Labels{e.orig, e.out}
		}
	}
	fencedOut := 0
	if fenced {
		var fencedIn bool
		fencedOut, fencedIn = p.applyFences(b, edits, drop)
		if mr, ok := run.(*mergeRun); ok && fencedIn {
			mr.sequential = len(mr.retries) > 0
		}
	}
	res.Changed = res.Repaired > 0 || drop.n > 0 || handed > 0 || appended > 0 || fencedOut > 0
	for _, i := range drop.members() {
		b.Drop(i)
	}
	return res, run
}

// applyFences keeps out of the request the samples of series forwarded with
// their own labels at or before the fence of a retired output with those
// labels (see retire.go). It returns how many series it changed, and whether
// the request carries a fenced label set at all.
func (p *Pipeline) applyFences(b Batch, edits []edit, drop *dropSet) (changed int, fencedIn bool) {
	edited := make(map[int]bool, len(edits))
	for _, e := range edits {
		if e.merge || !labels.Equal(e.out, e.orig) || !e.keep {
			edited[int(e.idx)] = true
		}
	}
	h := newPairHasher()
	for i := range b.Len() {
		if edited[i] || drop.has(i) || b.Skip(i) || b.HasHistograms(i) {
			continue
		}
		fc, ok := p.merger.fencedAt(hashSeries(b, i, h))
		if !ok || !fc.dropRaw {
			continue
		}
		f := fc.f
		fencedIn = true
		smp := b.Samples(i)
		kept := make([]Sample, 0, len(smp))
		for _, s := range smp {
			if s.T > f {
				kept = append(kept, s)
			}
		}
		if len(kept) == len(smp) {
			continue
		}
		p.merger.metrics.fenced.Add(float64(len(smp) - len(kept)))
		changed++
		if len(kept) == 0 {
			drop.add(i)
			continue
		}
		b.SetSamples(i, kept, []int{i})
	}
	return changed, fencedIn
}

// mergeRun is what a request owes the merge state: its transaction, to be
// told whether the upstreams took its samples, and the retries to send in a
// request of their own.
type mergeRun struct {
	tx         MergeTx
	retries    []Emit
	sequential bool // see MergeRun.Sequential
}

func (mr *mergeRun) Retries() []Emit { return mr.retries }

func (mr *mergeRun) Sequential() bool { return mr.sequential }

// Done reports the upstreams' answers to the merge state; only the first
// call counts.
func (mr *mergeRun) Done(ok bool, taken []int) {
	if mr.tx != nil {
		mr.tx.Done(ok, taken)
		mr.tx = nil
	}
}

// merges reports whether the pipeline merges collisions.
func (p *Pipeline) merges() bool { return p.policy == PolicyMerge && p.merger != nil }

// mergeGroups hands every output that the merge policy covers to the merge
// transaction and writes what it collects into the batch: an output's
// samples go into the slot of its first source, the other sources' slots are
// dropped; outputs the request carries no source of are appended. A series
// that the batch carries unchanged but whose labels equal a merged output
// joins that output as a source. It returns how many series it merged away
// or rewrote, how many rewrites it had to undo (merge state full), and the
// retries (samples for a request of their own).
func (p *Pipeline) mergeGroups(tx MergeTx, part string, edits []edit, b Batch, drop *dropSet) (n, collided, unmerged, appended int, retries []Emit) {
	// Group the merge edits by output, without a small allocation per group:
	// groups in one slice, chained by hash; each source records its group.
	type group struct {
		out      labels.Labels
		hash     uint64
		sameHash int32 // next group with the same hash, or -1
		nsrc     int32
	}
	type source struct {
		group int32
		idx   int           // series index
		k     int32         // edit position, or -1 for an unchanged series
		ls    labels.Labels // its labels
	}
	var (
		groups []group
		srcs   []source
		byHash map[uint64]int32
	)
	find := func(out labels.Labels, h uint64) int32 {
		g, ok := byHash[h]
		for ok && g >= 0 {
			if labels.Equal(groups[g].out, out) {
				return g
			}
			g = groups[g].sameHash
		}
		return -1
	}
	for k := range edits {
		e := &edits[k]
		if !e.merge {
			continue
		}
		if byHash == nil {
			byHash = make(map[uint64]int32, len(edits))
			groups = make([]group, 0, len(edits))
			srcs = make([]source, 0, len(edits))
		}
		h := e.hash
		g := find(e.out, h)
		if g < 0 {
			g = int32(len(groups))
			prev, ok := byHash[h]
			if !ok {
				prev = -1
			}
			groups = append(groups, group{out: e.out, hash: h, sameHash: prev})
			byHash[h] = g
		}
		groups[g].nsrc++
		srcs = append(srcs, source{group: g, idx: int(e.idx), k: int32(k), ls: e.orig})
	}
	// Unchanged series that land on a merged output are sources too. With
	// known targets, decide has already made them merge edits.
	if len(groups) > 0 && !p.TargetsKnown() {
		edited := make(map[int]bool, len(edits))
		for _, e := range edits {
			edited[int(e.idx)] = true
		}
		var sb labels.ScratchBuilder
		for i := range b.Len() {
			if edited[i] || b.Skip(i) {
				continue
			}
			ls := b.Labels(i, &sb)
			if g := find(ls, ls.Hash()); g >= 0 && !b.HasHistograms(i) {
				groups[g].nsrc++
				srcs = append(srcs, source{group: g, idx: i, k: -1, ls: ls})
			}
		}
	}
	// Sources of one group together, in request order.
	slices.SortFunc(srcs, func(a, b source) int {
		if a.group != b.group {
			return int(a.group - b.group)
		}
		return a.idx - b.idx
	})
	var (
		ls      []labels.Labels
		samples [][]Sample
		idx     = make([]int, len(srcs)) // sources' series indices, kept by setSamples
		slots   = make([][]int, 0, len(groups))
		first   [][]Sample // by group: the first source's own samples
	)
	for j := range srcs {
		idx[j] = srcs[j].idx
	}
	for start := 0; start < len(srcs); {
		g := &groups[srcs[start].group]
		end := start + int(g.nsrc)
		ls, samples = ls[:0], samples[:0]
		for _, src := range srcs[start:end] {
			ls = append(ls, src.ls)
			samples = append(samples, b.Samples(src.idx))
		}
		gidx := idx[start:end:end]
		start = end
		held := tx.AddHashed(g.out, g.hash, ls, samples)
		if collides(tx, len(slots), ls) {
			collided += len(gidx)
		}
		if p.cache != nil {
			// The state holds these labels now, or not: the cache counts
			// them once.
			for j := end - len(gidx); j < end; j++ {
				if k := srcs[j].k; k >= 0 && edits[k].d != nil && !p.cache.counted(edits[k].d, held) {
					p.cache.recount(edits[k].d, held, part)
				}
			}
		}
		if !held {
			// No room in the merge state: forward the sources unrepaired;
			// the collision guard then keeps them apart. The output's own
			// label set goes out raw meanwhile: if it is merged later (room
			// again), it starts after what went out so (the fence), or its
			// first merged samples would meet raw ones at their timestamps.
			if p.merger != nil {
				last := int64(math.MinInt64)
				for _, smp := range samples {
					for _, x := range smp {
						last = max(last, x.T)
					}
				}
				p.merger.fence(hashLabels(g.out), last, p.merger.shards[0].now(), false)
			}
			for _, src := range srcs[end-len(gidx) : end] {
				if src.k < 0 {
					continue
				}
				e := &edits[src.k]
				if !labels.Equal(e.out, e.orig) {
					unmerged++
				}
				e.merge, e.out = false, e.orig
			}
			slots = append(slots, nil)
			first = append(first, nil)
			continue
		}
		// Every source's slot leaves the batch, unless an emit fills the
		// first one below.
		for _, i := range gidx {
			drop.add(i)
		}
		n += len(gidx)
		slots = append(slots, gidx)
		var own []Sample
		if len(gidx) == 1 && labels.Equal(ls[0], g.out) {
			own = samples[0]
		}
		first = append(first, own)
	}
	emitted := make([]bool, len(slots))
	for _, e := range tx.Collect() {
		if e.Group >= 0 && e.Group < len(emitted) && !e.Retry {
			emitted[e.Group] = true
		}
		switch {
		case e.Retry:
			retries = append(retries, e)
		case e.Group < 0 || e.Group >= len(slots) || slots[e.Group] == nil:
			b.AppendSeries(e.Labels, e.Samples)
			appended++
		default:
			gidx := slots[e.Group]
			drop.undo(gidx[0])
			if first[e.Group] != nil && sameSamples(e.Samples, first[e.Group]) {
				// A genuine series alone, forwarded as it came: the batch
				// stays unchanged (and can go out as the sender's bytes).
				n--
				continue
			}
			b.SetLabels(gidx[0], e.Labels)
			b.SetSamples(gidx[0], e.Samples, gidx)
		}
	}
	// An output that sends nothing in this request (its samples are held,
	// or go as retries) drops its sources' exemplars. A series with
	// exemplars and no sample is refused by Prometheus 3 (400, "must contain
	// at least one sample or histogram"), and the sender drops the whole
	// batch; keeping the exemplars for the output's next sample would take
	// state (memory, the log) for what Prometheus itself keeps best effort
	// (a ring buffer; out-of-order exemplars are dropped silently). An
	// output that does send here carries its sources' exemplars
	// (SetSamples).
	for gi, gidx := range slots {
		if gidx != nil && !emitted[gi] {
			if k := b.Exemplars(gidx); k > 0 {
				p.merger.droppedExemplars.Add(float64(k))
			}
		}
	}
	return n, collided, unmerged, appended, retries
}

// collides reports whether the sources of Add call k are summed with
// another series: their output has several sources in the merge state, or
// (a MergeTx that cannot tell) in this request.
func collides(tx MergeTx, k int, sources []labels.Labels) bool {
	if st, ok := tx.(interface{ Sources(k int) int }); ok {
		return st.Sources(k) > 1
	}
	for _, ls := range sources[1:] {
		if !labels.Equal(ls, sources[0]) {
			return true
		}
	}
	return false
}

// sameSamples reports whether a and b are the same samples, bit for bit.
func sameSamples(a, b []Sample) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].T != b[i].T || a[i].ST != b[i].ST || math.Float64bits(a[i].V) != math.Float64bits(b[i].V) {
			return false
		}
	}
	return true
}

// decide runs the Repairer over every series that it may change. Under the
// merge policy, a series whose output the Merger covers becomes a merge edit
// even when its labels did not change (a genuine status_code="500").
//
// Native histograms are not merged. A histogram series whose rewrite the
// merge would cover is forwarded unrepaired, and counted in undone: the
// collision guard could not keep it apart, as it sees one request only, and
// the series it lands on may have come in an earlier one (another shard of
// the sender) — the TSDB would then refuse the whole request (duplicate
// sample, 400) and the sender drop its batch.
func (p *Pipeline) decide(b Batch) (edits []edit, undone int) {
	var (
		sb labels.ScratchBuilder
		h  *pairHasher // allocated once per request, if needed
	)
	for i := range b.Len() {
		if b.Skip(i) || !p.MayChange(b.Getter(i)) {
			continue
		}
		var d *decision
		if p.cache != nil {
			// Seen before: no labels built, no rules run.
			var k cacheKey
			var ok bool
			if k.h1, k.h2, ok = b.SeriesKey(i); !ok {
				if h == nil {
					h = newPairHasher()
				}
				k = seriesKey(b, i, h)
			}
			if d = p.cache.get(k); d != nil {
				p.countFired(d.fired)
			} else {
				d = p.cache.put(k, p.decideSeries(b.Labels(i, &sb)))
			}
		} else {
			d = p.decideSeries(b.Labels(i, &sb))
		}
		var cached *decision
		if p.cache != nil {
			cached = d
		}
		switch {
		case d.merge && b.HasHistograms(i):
			if !labels.Equal(d.out, d.orig) {
				undone++
			}
		case d.merge:
			edits = append(edits, edit{idx: int32(i), orig: d.orig, out: d.out, keep: true, merge: true, hash: d.outHash, d: cached})
		case !d.changed && d.keep:
		default:
			edits = append(edits, edit{idx: int32(i), orig: d.orig, out: d.out, keep: d.keep, d: cached})
		}
	}
	return edits, undone
}

// decideSeries runs the rules over one series' labels.
func (p *Pipeline) decideSeries(orig labels.Labels) *decision {
	out, changed, keep, fired := p.repair(orig)
	d := &decision{orig: orig, out: out, changed: changed, keep: keep, fired: fired}
	if keep && p.merges() && p.Merges(out, changed) {
		d.merge, d.outHash = true, out.Hash()
	}
	return d
}

// dropSet is the set of series a repair removes. idx lists every series
// added, in order, including some taken out again by undo (in says which
// are in): undo is O(1), and members lists them once.
type dropSet struct {
	in  []bool
	idx []int
	n   int
}

func newDropSet(n int) *dropSet { return &dropSet{in: make([]bool, n)} }

func (d *dropSet) add(i int) {
	if !d.in[i] {
		d.in[i] = true
		d.idx = append(d.idx, i)
		d.n++
	}
}

// undo takes i out of the set again.
func (d *dropSet) undo(i int) {
	if d.in[i] {
		d.in[i] = false
		d.n--
	}
}

func (d *dropSet) has(i int) bool { return d != nil && i < len(d.in) && d.in[i] }

// members returns the series in the set, each once, in the order added.
func (d *dropSet) members() []int {
	out := d.idx[:0]
	for _, i := range d.idx {
		if d.in[i] {
			d.in[i] = false // listed: a repeat is skipped
			out = append(out, i)
		}
	}
	for _, i := range out {
		d.in[i] = true
	}
	d.idx = out
	return out
}
