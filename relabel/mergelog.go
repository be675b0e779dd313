package relabel

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/rwfix/rwfix/remotewrite/series"
)

// The merge log keeps the merge state across restarts and crashes, in the
// data directory (--storage.path, default data/), as Prometheus' WAL keeps
// its head: an append-only file of small binary records, one per state
// change — an output or source first seen, a source sample taken, an output
// timestamp finalized (and whether it was sent), samples taken by the
// upstream, an output forgotten, how a partition's requests come (its
// sender's protocol and forwarded headers: see idle.go), a retired output's
// fence (see retire.go). The records of a
// request are written (write(2), no fsync) before the request is answered,
// so a SIGKILL or an OOM kill loses nothing: the kernel has them. The file
// is fsynced every 10 s and at compaction, so a machine crash loses at most
// that much.
//
// A restart replays the records through the same state machine: the clock's
// decisions (end of learning, overdue sources) are in the log as finalized
// timestamps, so the replay makes exactly the same ones, and a sample the
// upstream may already have is re-sent with exactly the same value.
//
// Compaction writes the whole state as a snapshot (one record per output and
// per source) to a new file, fsyncs it and renames it over the log; it runs
// at start, at shutdown, and when the log has grown past twice the last
// snapshot plus 64 MiB.
//
// A torn last record (a crash in the middle of a write) is ignored: its
// request was not answered, and the sender sends it again. So is a tail of
// zero bytes: after a power loss some file systems (ext4, XFS) keep the
// file's new length but not the blocks written last, which read as zeros; the
// records lost there are at most the last 10 s, as with any machine crash.
// Either end is unclean (Merger.UncleanEnd): the state may lack its last
// records. The compaction at open rewrites the file from the state, so new
// records never follow the torn or zeroed bytes. Any other damage (bad
// checksum or an empty record with more data after it, unknown record)
// discards the whole state: the merge then learns its outputs afresh, as on
// a first start — never a wrong value. The damaged file is kept beside, as
// merge.log.corrupt.

const (
	logName = "merge.log"

	recNewOutput   = 1
	recNewSource   = 2
	recSample      = 3
	recFinal       = 4
	recSent        = 5
	recDrop        = 6
	recOutputState = 7
	recSourceState = 8
	recForgotten   = 9
	recMeta        = 10
	recDetach      = 11
	recOrphan      = 12
	recAdopt       = 13
	recRecreated   = 14
	recOrigin      = 15
	recFence       = 16
	recLossGap     = 17
	recOldPart     = 18
	recExisted     = 19

	compactSlack = 64 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrCorruptLog is returned by OpenLog when the log is damaged; the state is
// then empty.
var ErrCorruptLog = errors.New("merge log corrupt")

type mergeLog struct {
	// mu guards the log; taken after a shard's lock, never before.
	mu       sync.Mutex
	dir      string
	f        *os.File
	size     int64
	snapSize int64
	// broken: a write failed, so the file lacks records and its replay
	// would not give the state in memory. Until a snapshot succeeds, every
	// flush tries one (at most every 10 s), and the file is removed, so that
	// a crash meanwhile starts without state (a gap), never from a state
	// that lacks records (wrong values).
	broken     bool
	lastRepair time.Time
	buf        []byte // records not yet written
	rec        []byte // the record being built
	done       chan struct{}
}

// OpenLog makes the merge state durable in dir: it replays the log found
// there (if any), compacts it, and from then on logs every change. It
// returns the number of outputs restored. A corrupt log is set aside and the
// state starts empty (the error says so; rwfix runs on).
func (m *Merger) OpenLog(dir string) (int, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return 0, fmt.Errorf("merge state directory: %w", err)
	}
	path := filepath.Join(dir, logName)
	m.lockAll()
	defer m.unlockAll()
	// Without a log (a first start, or the directory was lost) the state
	// begins now: see Merger.horizon. A log's own horizon replaces it.
	m.horizon = m.shards[0].now().Add(clockSkew).UnixMilli()
	m.backlogBefore.Store(m.horizon)
	removeStaleSnapshots(dir)
	var replayErr error
	if f, err := os.Open(path); err == nil {
		m.zeroTail, m.lastBoot, m.closed = false, "", false
		m.uncleanEnd, replayErr = m.replayFrom(bufio.NewReaderSize(f, 1<<20))
		f.Close()
		if m.zeroTail || (!m.closed && m.lastBoot != m.boot) {
			// A power loss (or a kernel crash) may have taken the records of
			// the last seconds, which were not fsynced: the machine booted
			// again since the process that wrote the log ran, and it did not
			// close the log; or the tail is zeros. A source first seen from
			// now on may have counted before. (A SIGKILL or an OOM kill loses
			// nothing: the kernel had every record, torn tail or not.)
			m.powerLoss = true
			prev := m.horizon
			m.horizon = m.shards[0].now().Add(clockSkew).UnixMilli()
			m.backlogBefore.Store(m.horizon)
			m.lostTail(prev)
		}
		if replayErr != nil {
			m.reset()
			m.horizon = m.shards[0].now().Add(clockSkew).UnixMilli()
			m.backlogBefore.Store(m.horizon)
			_ = os.Rename(path, path+".corrupt")
			replayErr = fmt.Errorf("%w: %s: %w; starting without merge state (set aside as %s.corrupt)", ErrCorruptLog, path, replayErr, logName)
		}
		m.keepOriginsInUse()
	} else if !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("merge state: %w", err)
	}
	l := &mergeLog{dir: dir, done: make(chan struct{})}
	l.mu.Lock()
	defer l.mu.Unlock()
	m.log = l
	if err := m.compact(false); err != nil {
		m.log = nil
		return 0, err
	}
	for _, sh := range m.shards {
		sh.log = l
	}
	go m.syncLoop(l)
	return m.outputs(), replayErr
}

// snapshotPattern names compaction's temporary files (os.CreateTemp).
const snapshotPattern = ".merge-*.tmp"

// lostTail makes the state restored after a power loss what the records it
// kept can tell. The lost records may have held any source's samples of its
// last seconds, its stale marker among them: whether a live source went on
// or vanished then (LiteLLM removed the series, or restarted) is unknown.
// So every timestamp held before the new horizon is finalized unsent
// (unknowable: counted), and every source that still counts is taken as gone
// right after its last sample, as after a failed scrape: when it comes back
// (a sample the sender sent again after the restart, or a later one), its
// creation time and its value tell whether it went on or was created again,
// by the same rules as after any gap. Where a source that counts has nothing
// kept at a held timestamp or after it, its samples may still be behind on
// its shard of the sender, not lost: the output's held timestamps from there
// on wait for it as for any lagging source, and advance finalizes them
// unsent when it comes or is overdue (see inLossGap). The compaction that
// follows keeps the result.
// Called with every shard locked, before the log is open; prev is the
// horizon before this power loss.
func (m *Merger) lostTail(prev int64) {
	for _, sh := range m.shards {
		// A new horizon: the gaps of an earlier power loss stop holding
		// timestamps back, and only count late samples in them (pastGap).
		for o, g := range sh.lossGaps {
			if o.is(outGone) {
				delete(sh.lossGaps, o)
				continue
			}
			if g.f0 != math.MaxInt64 {
				g.past = append(g.past, gapSpan{g.f0, prev})
				if len(g.past) > maxPastGaps {
					g.past = slices.Delete(g.past, 0, len(g.past)-maxPastGaps)
				}
			}
			g.f0, g.kept = math.MaxInt64, nil
		}
		for o := range sh.all() {
			for {
				t, ok := o.next()
				if !ok || t >= m.horizon {
					break
				}
				g := sh.lossGap(o)
				if lagging(o, t) || sh.awaitsCreation(o, t, stampOf(sh.now())) {
					// A source that counts has nothing kept at or
					// after t: its samples may be lost, or still
					// behind on its shard of the sender (sim all
					// seeds 12004237, 12010082). Or a source's
					// creation time at t is not in yet, and the
					// value at t hangs on it: a source back after a
					// gap at its old count went on, or was created
					// again, which tells whether the stale ones'
					// counts are the same life's (sim all seed
					// 25005013: LiteLLM restarted in an outage, its
					// 500 back at 1 as before, its _created sample
					// still on its shard of the sender; taken as
					// going on, the None's count of the life before
					// stayed in the sum). advance waits for it, as
					// for any lagging source, and finalizes the rest
					// of the gap unsent. The sources whose samples
					// were kept are gone right after the last one,
					// once it is finalized (see keptUntil), as below.
					g.kept = keptAfterLoss(o)
					break
				}
				m.metrics.unknown.Inc()
				g.counted = append(g.counted, t)
				sh.finalize(o, t, false)
			}
			if _, held := o.next(); !held {
				goneAfterLoss(o, math.MaxInt64)
			}
			sh.list(o)
		}
	}
}

// lossGap is what lostTail left of an output: its frontier before (the
// timestamps up to it were finalized before the loss) and the timestamps
// counted unknowable since, in order.
type lossGap struct {
	f0      int64 // MaxInt64: none under the running horizon, only past ones
	counted []int64
	// past: the gaps of earlier power losses (frontier before, horizon):
	// a late sample at a timestamp in one is unknowable too, and counted
	// once (see lateBeforeHorizon; sim all seed 21004544: the late samples
	// came after a second power loss).
	past []gapSpan
	// kept: the sources that counted with samples kept when lostTail left
	// held timestamps to wait for a lagging source, and their last sample
	// kept (see keptUntil).
	kept []keptLast
}

type gapSpan struct{ f0, h int64 }

// maxPastGaps bounds the earlier power losses' gaps an output keeps.
const maxPastGaps = 4

type keptLast struct {
	s    *source
	last int64
}

// keptAfterLoss is each source of o that counts and has samples kept, with
// its last one.
func keptAfterLoss(o *output) []keptLast {
	var k []keptLast
	for _, s := range o.sources {
		// A stale source with samples kept is back after a gap (its
		// return may wait for its creation time: see lostTail): it counts
		// from there as well.
		if s.has && !s.lastStl && s.queue.len() > 0 {
			k = append(k, keptLast{s, s.lastT})
		}
	}
	return k
}

// keptUntil takes, once o is finalized at its last sample kept, each source
// of g.kept with no sample since as gone right after it, as lostTail takes
// every source that counts when nothing is left held: its stale marker may
// be among the lost records (without it, the output would wait for it at
// every timestamp, and a reset of the others would be taken as alone).
// Called by finalize (a replay decides alike).
func keptUntil(g *lossGap, o *output) {
	k := g.kept[:0]
	for _, e := range g.kept {
		switch s := e.s; {
		case o.f < e.last:
			k = append(k, e)
		case s.has && !s.stale && !s.lastStl && s.queue.len() == 0 && s.lastT == e.last:
			s.stale, s.lastStl, s.staleAt = true, true, s.lastT+1
		}
	}
	clear(g.kept[len(k):])
	g.kept = k
}

func (m *shard) lossGap(o *output) *lossGap {
	g := m.lossGaps[o]
	if g == nil {
		if m.lossGaps == nil {
			m.lossGaps = map[*output]*lossGap{}
		}
		g = &lossGap{f0: o.f}
		m.lossGaps[o] = g
	} else if g.f0 == math.MaxInt64 {
		g.f0 = o.f // a gap of this horizon beside past ones
	}
	return g
}

// lossGapRecord is the record of what lostTail left of o (see lossGap):
// its frontier before, and the timestamps counted (a snapshot's: all of
// them; lateBeforeHorizon's: the one it counted). The horizon and the gap
// outlive a restart on the log (a SIGKILL after the power loss's restart):
// the late sample that finds the gap may come after it.
func lossGapRecord(l *mergeLog, o *output, f0 int64, counted []int64, kept []keptLast, past []gapSpan, withKept bool) []byte {
	l.begin(recLossGap)
	l.uvarint(o.id)
	l.varint(f0)
	l.uvarint(uint64(len(counted)))
	for _, t := range counted {
		l.varint(t)
	}
	if withKept { // a snapshot's: see lossGap.kept, lossGap.past
		l.uvarint(uint64(len(kept)))
		for _, e := range kept {
			l.uvarint(e.s.id())
			l.varint(e.last)
		}
		l.uvarint(uint64(len(past)))
		for _, p := range past {
			l.varint(p.f0)
			l.varint(p.h)
		}
	}
	return l.frame(nil)
}

// lossGap: recLossGap, what lostTail left of an output, and the timestamps
// counted since.
func (rp *replayer) lossGap(r *recReader) {
	oid, f0, n := r.uvarint(), r.varint(), r.uvarint()
	var ts []int64
	for i := uint64(0); i < n && r.err == nil; i++ {
		ts = append(ts, r.varint())
	}
	withKept := len(r.b) > 0 && r.err == nil // a snapshot's, since kept is
	var kept []keptLast
	if withKept {
		nk := r.uvarint()
		for i := uint64(0); i < nk && r.err == nil; i++ {
			id, last := r.uvarint(), r.varint()
			if ref, ok := rp.srcs[id]; ok {
				kept = append(kept, keptLast{ref.s, last})
			}
		}
	}
	var past []gapSpan
	if withKept && len(r.b) > 0 && r.err == nil { // since past gaps are kept
		np := r.uvarint()
		for i := uint64(0); i < np && i < maxPastGaps && r.err == nil; i++ {
			past = append(past, gapSpan{r.varint(), r.varint()})
		}
	}
	o := rp.outs[oid]
	if o == nil || r.err != nil {
		return
	}
	g := rp.m.home(o).lossGap(o)
	g.f0 = f0
	if withKept {
		g.kept, g.past = kept, past
	}
	for _, t := range ts {
		if i, found := slices.BinarySearch(g.counted, t); !found {
			g.counted = slices.Insert(g.counted, i, t)
		}
	}
}

// lateBeforeHorizon counts, after a power loss, a timestamp that lostTail's
// finalizations passed over: a source's sample at t arrives after its
// output finalized later timestamps unsent (its shard of the sender was
// still behind when the state was restored: sim all seed 8000047), and no
// source had a sample at t then. The output sends nothing at t — before the
// horizon its value is unknowable, as at every timestamp lostTail finalized
// — so t is one more unknowable timestamp, counted once
// (rwfix_merge_unknown_samples_total), as if it had been held at the
// restart. The gap is in the log (recLossGap), so a process restarted on
// it (a SIGKILL after the power loss's restart) counts alike; a second
// power loss starts another horizon, and gaps of its own.
func (m *shard) lateBeforeHorizon(o *output, t int64) {
	if !m.inLossGap(o, t) && !m.inPastGap(o, t) {
		return
	}
	g := m.lossGaps[o]
	i, found := slices.BinarySearch(g.counted, t)
	if found {
		return
	}
	g.counted = slices.Insert(g.counted, i, t)
	m.metrics.unknown.Inc()
	if l := m.log; l != nil {
		l.mu.Lock()
		l.buf = append(l.buf, lossGapRecord(l, o, g.f0, []int64{t}, nil, nil, false)...)
		l.mu.Unlock()
	}
}

// goneAfterLoss takes, after a power loss, each source of o that still counts and
// has no sample kept at or after t as gone right after its last sample.
func goneAfterLoss(o *output, t int64) {
	for _, s := range o.sources {
		if s.has && !s.stale && s.queue.len() == 0 && s.lastT < t {
			s.stale, s.lastStl, s.staleAt = true, true, s.lastT+1
		}
	}
}

// lagging reports whether a source of o that counts has no sample at or
// after t (yet).
func lagging(o *output, t int64) bool {
	for _, s := range o.sources {
		if s.has && !s.stale && s.queue.len() == 0 && s.lastT < t {
			return true
		}
	}
	return false
}

// inLossGap reports whether t is in what a power loss left of o before its
// horizon (see lostTail): not sent, and a source with no sample at t is
// gone from right after its last one.
func (m *shard) inLossGap(o *output, t int64) bool {
	g := m.lossGaps[o]
	return g != nil && t > g.f0 && t < m.w.horizon
}

// inPastGap reports whether t is in a gap an earlier power loss left of o.
func (m *shard) inPastGap(o *output, t int64) bool {
	if g := m.lossGaps[o]; g != nil {
		for _, p := range g.past {
			if t > p.f0 && t < p.h {
				return true
			}
		}
	}
	return false
}

// goneInLossGap takes, at a timestamp t in o's loss gap, each source that
// counts and has no sample at t as gone right after its last one: a reset
// of another source there is not taken as alone on a sample the lost
// records may have held. Its samples after t (sent again, or later ones:
// a series' samples come in order) bring it back, by the rules of any gap.
// Called by finalize (a replay decides alike).
func goneInLossGap(o *output, t int64) {
	for _, s := range o.sources {
		if !s.has || s.stale {
			continue
		}
		if q, ok := s.queue.first(); ok && q <= t {
			continue
		}
		s.stale, s.staleAt = true, o.f+1
		if s.queue.len() == 0 {
			s.lastStl = true
		}
	}
}

// removeStaleSnapshots removes the temporary files of compactions that a
// crash interrupted: the log they were to replace is still there, complete,
// and nothing else would ever remove them. Called at OpenLog, before any
// compaction of this process can have begun.
func removeStaleSnapshots(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if ok, _ := filepath.Match(snapshotPattern, e.Name()); ok && e.Type().IsRegular() {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// UncleanEnd reports whether the log OpenLog replayed ended with a torn
// record or zero bytes (a crash mid-write, a power loss): the restored state
// may then lack the changes of its last seconds.
func (m *Merger) UncleanEnd() bool {
	m.lockAll()
	defer m.unlockAll()
	return m.uncleanEnd
}

// Close writes a final snapshot and fsyncs it. The file stays open until the
// process exits: a request still running after the shutdown timeout logs
// after the snapshot, as it would have before.
func (m *Merger) Close() error {
	m.lockAll()
	defer m.unlockAll()
	l := m.log
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	return m.compact(true)
}

// reset empties every shard. Called with every shard locked.
func (m *Merger) reset() {
	for _, sh := range m.shards {
		sh.outs, sh.more, sh.parts, sh.n, sh.nsrc = map[outKey]*output{}, nil, map[string]*partition{}, 0, 0
		sh.forgotten, sh.forgottenQ, sh.interval = map[outKey]tomb{}, nil, 0
		sh.forgetParts()
		sh.pending.Store(0)
	}
	m.total.Store(0)
	m.originMu.Lock()
	m.origins = nil
	m.originMu.Unlock()
}

func (m *Merger) syncLoop(l *mergeLog) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
			l.mu.Lock()
			f := l.f
			l.mu.Unlock()
			_ = f.Sync() // a file closed by a compaction meanwhile: nothing to do
		}
	}
}

// flushLog writes the buffered records, and compacts when the log has grown.
// Called with no shard locked, before the requests whose changes they are
// are answered.
func (m *Merger) flushLog() {
	l := m.log
	if l == nil {
		return
	}
	l.mu.Lock()
	compact := false
	switch {
	case len(l.buf) == 0:
	case l.broken:
		l.buf = l.buf[:0] // the snapshot will hold what they changed
		if now := time.Now(); now.Sub(l.lastRepair) >= 10*time.Second {
			l.lastRepair = now
			compact = true
		}
	default:
		n, err := l.f.Write(l.buf)
		l.size += int64(n)
		l.buf = l.buf[:0]
		if cap(l.buf) > 1<<20 {
			l.buf = nil // a burst (the end of a learning) made it grow: give it back
		}
		if err != nil {
			m.metrics.logErrors.Inc()
			l.broken, l.lastRepair = true, time.Now()
			_ = os.Remove(filepath.Join(l.dir, logName))
		} else {
			compact = l.size > 2*l.snapSize+compactSlack
		}
	}
	l.mu.Unlock()
	if compact {
		// The shards' locks come first: take them all, then the log's.
		m.lockAll()
		l.mu.Lock()
		if err := m.compact(false); err != nil {
			m.metrics.logErrors.Inc()
		}
		l.mu.Unlock()
		m.unlockAll()
	}
}

// compact writes the whole state to a new log file and renames it over the
// old one; closing says that nothing will be appended (Close). Called with
// every shard and the log locked.
func (m *Merger) compact(closing bool) error {
	l := m.log
	path := filepath.Join(l.dir, logName)
	tmp, err := os.CreateTemp(l.dir, snapshotPattern)
	if err != nil {
		return fmt.Errorf("merge state: %w", err)
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriterSize(tmp, 1<<20)
	var size int64
	n, _ := w.Write(metaState(l, m, closing))
	size += int64(n)
	m.originMu.Lock()
	for _, part := range slices.Sorted(maps.Keys(m.origins)) {
		l.begin(recOrigin)
		l.origin(part, m.origins[part])
		n, _ := w.Write(l.frame(nil))
		size += int64(n)
	}
	m.originMu.Unlock()
	n, _ = w.Write(m.fenceRecords(l))
	size += int64(n)
	for _, sh := range m.shards {
		for _, k := range sh.tombs() {
			tb := sh.forgotten[k]
			l.begin(recForgotten)
			l.str(k.part)
			l.uvarint(k.h)
			l.varint(tb.f)
			l.uvarint(uint64(len(tb.srcs)))
			for _, h := range tb.srcs {
				l.uvarint(h)
			}
			n, _ := w.Write(l.frame(nil))
			size += int64(n)
		}
		for o := range sh.all() {
			n, _ := w.Write(outputState(l, o, sh.deadSince(o)))
			size += int64(n)
			for _, s := range o.sources {
				n, _ := w.Write(sourceState(l, &m.created, o, s))
				size += int64(n)
			}
			if g := sh.lossGaps[o]; g != nil {
				n, _ := w.Write(lossGapRecord(l, o, g.f0, g.counted, g.kept, g.past, true))
				size += int64(n)
			}
			if o.is(outOldPart) {
				l.begin(recOldPart)
				l.uvarint(o.id)
				n, _ := w.Write(l.frame(nil))
				size += int64(n)
			}
		}
	}
	err = errors.Join(w.Flush(), tmp.Sync(), tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("merge state: writing snapshot: %w", err)
	}
	if d, err := os.Open(l.dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("merge state: %w", err)
	}
	if l.f != nil {
		l.f.Close()
	}
	l.f, l.size, l.snapSize, l.buf, l.broken = f, size, size, l.buf[:0], false
	return nil
}

// Record encoding: uvarint length of the payload, CRC-32C of the payload
// (4 bytes, little endian), payload (type byte, then fields as varints,
// fixed64 floats and length-prefixed strings).

func (l *mergeLog) begin(typ byte)   { l.rec = append(l.rec[:0], typ) }
func (l *mergeLog) uvarint(v uint64) { l.rec = binary.AppendUvarint(l.rec, v) }
func (l *mergeLog) varint(v int64)   { l.rec = binary.AppendVarint(l.rec, v) }
func (l *mergeLog) float(v float64) {
	l.rec = binary.LittleEndian.AppendUint64(l.rec, math.Float64bits(v))
}
func (l *mergeLog) str(s string) { l.uvarint(uint64(len(s))); l.rec = append(l.rec, s...) }
func (l *mergeLog) labels(ls labels.Labels) {
	l.uvarint(uint64(ls.Len()))
	ls.Range(func(lb labels.Label) { l.str(lb.Name); l.str(lb.Value) })
}
func (l *mergeLog) bool(b bool) {
	if b {
		l.rec = append(l.rec, 1)
	} else {
		l.rec = append(l.rec, 0)
	}
}
func (l *mergeLog) origin(part string, o series.Origin) {
	l.str(part)
	l.str(o.Proto)
	l.uvarint(uint64(len(o.Header)))
	for _, name := range slices.Sorted(maps.Keys(o.Header)) {
		l.str(name)
		l.uvarint(uint64(len(o.Header[name])))
		for _, v := range o.Header[name] {
			l.str(v)
		}
	}
}

// heldSamples writes a source's queue as samples does.
func (l *mergeLog) heldSamples(q *heldQueue) {
	l.uvarint(uint64(q.len()))
	for i := range q.len() {
		l.sample(q.at(i))
	}
}

func (l *mergeLog) samples(s []Sample) {
	l.uvarint(uint64(len(s)))
	for _, p := range s {
		l.sample(p)
	}
}

func (l *mergeLog) sample(p Sample) {
	l.varint(p.T)
	l.float(p.V)
	l.varint(p.ST)
}

// frame appends the record built since begin to dst.
func (l *mergeLog) frame(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(l.rec)))
	dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(l.rec, crcTable))
	return append(dst, l.rec...)
}

func (l *mergeLog) end() { l.buf = l.frame(l.buf) }

// record appends one record, built by fields, to the log (not while
// replaying it: the records are there already).
func (m *shard) record(typ byte, fields func(l *mergeLog)) {
	if l := m.log; l != nil && !m.replay {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.begin(typ)
		fields(l)
		l.end()
	}
}

func (m *shard) logNewOutput(o *output) {
	m.record(recNewOutput, func(l *mergeLog) {
		l.uvarint(o.id)
		l.str(o.part)
		l.labels(o.labels)
	})
}

func (m *shard) logNewSource(o *output, s *source) {
	m.record(recNewSource, func(l *mergeLog) {
		l.uvarint(o.id)
		l.uvarint(s.id())
		l.labels(s.labels)
	})
}

func (m *shard) logSample(s *source, p Sample) {
	m.record(recSample, func(l *mergeLog) {
		l.uvarint(s.id())
		l.varint(p.T)
		l.float(p.V)
		l.varint(p.ST)
	})
}

func (m *shard) logFinal(o *output, t int64, emit bool) {
	m.record(recFinal, func(l *mergeLog) {
		l.uvarint(o.id)
		l.varint(t)
		l.bool(emit)
	})
}

func (m *shard) logSent(o *output, t int64) {
	m.record(recSent, func(l *mergeLog) {
		l.uvarint(o.id)
		l.varint(t)
	})
}

func (m *shard) logDetach(o *output, s *source) {
	m.record(recDetach, func(l *mergeLog) {
		l.uvarint(o.id)
		l.uvarint(s.id())
	})
}

func (m *shard) logRecreated(s *source, t int64) {
	m.record(recRecreated, func(l *mergeLog) {
		l.uvarint(s.id())
		l.varint(t)
	})
}

func (m *shard) logExisted(s *source) {
	m.record(recExisted, func(l *mergeLog) {
		l.uvarint(s.id())
	})
}

func (m *shard) logOldPart(o *output) {
	m.record(recOldPart, func(l *mergeLog) {
		l.uvarint(o.id)
	})
}

func (m *shard) logOrphan(o *output) {
	m.record(recOrphan, func(l *mergeLog) {
		l.uvarint(o.id)
	})
}

func (m *shard) logAdopt(o *output) {
	m.record(recAdopt, func(l *mergeLog) {
		l.uvarint(o.id)
		l.str(o.part)
	})
}

func (m *shard) logDrop(o *output) {
	m.record(recDrop, func(l *mergeLog) {
		l.uvarint(o.id)
	})
}

// metaState is the snapshot record of what the whole state knows: its
// horizon, and each shard's scrape interval (so that a restart does not
// wait max_wait until it has learned it again), and the sender's backlog
// horizon (Merger.backlogBefore).
//
// It also names the boot of the machine (Linux' boot_id) and whether the
// log was closed: a log that was not closed, written during another boot,
// may lack its last unsynced records (see OpenLog).
func metaState(l *mergeLog, m *Merger, closing bool) []byte {
	l.begin(recMeta)
	l.varint(m.horizon)
	l.uvarint(mergeShards)
	for _, sh := range m.shards {
		l.varint(sh.interval)
	}
	l.str(m.boot)
	l.bool(closing)
	l.bool(m.partitionsKnown)
	l.str(m.partitions)
	l.varint(m.backlogBefore.Load())
	return l.frame(nil)
}

// bootID identifies the running boot of the machine ("" where unknown). A
// variable: tests boot the machine again.
var bootID = func() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// outputState is the snapshot record of an output.
func outputState(l *mergeLog, o *output, dead []deadSpan) []byte {
	l.begin(recOutputState)
	l.uvarint(o.id)
	l.str(o.part)
	l.labels(o.labels)
	carry, carryT := o.carry()
	l.float(carry)
	l.varint(o.st)
	l.varint(o.f)
	l.bool(false) // was: learning (no longer used)
	l.samples(o.q)
	l.bool(o.is(outOrphan))
	l.varint(o.lifeAt)
	l.varint(carryT)
	l.bool(o.is(outRevived))
	l.varint(0) // was: the last revival's dead span's start (now in dead)
	l.uvarint(uint64(len(dead)))
	for _, d := range dead {
		l.varint(d.from)
		l.varint(d.to)
		l.uvarint(d.back)
	}
	return l.frame(nil)
}

// sourceState is the snapshot record of a source.
func sourceState(l *mergeLog, created *createdTimes, o *output, s *source) []byte {
	l.begin(recSourceState)
	l.uvarint(o.id)
	l.uvarint(s.id())
	l.labels(s.labels)
	l.heldSamples(&s.queue)
	l.varint(s.lastT)
	l.bool(s.lastStl)
	l.varint(s.firstT)
	l.bool(s.has)
	l.float(s.v)
	l.varint(s.st)
	l.bool(s.stale)
	l.varint(s.resetAt)
	l.varint(s.bornAt)
	l.varint(s.firstST)
	l.bool(s.fromTomb)
	l.uvarint(s.tombHash())
	l.varint(s.staleAt)
	l.bool(s.alone)
	// The creation times said by a _created source: a _total source back
	// after a gap compares its creation time with them (created.go), and
	// the samples that said them are not in the snapshot.
	var spans []createdSpan
	if o.is(outMin) {
		spans = created.spans(s.labels)
	}
	l.uvarint(uint64(len(spans)))
	for _, sp := range spans {
		l.varint(sp.from)
		l.varint(sp.to)
		l.float(sp.v)
	}
	l.varint(s.countT)
	return l.frame(nil)
}

// recReader decodes the fields of one record.
type recReader struct {
	b   []byte
	err error
}

func (r *recReader) fail() {
	if r.err == nil {
		r.err = errors.New("truncated record")
	}
}

func (r *recReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recReader) float() float64 {
	if len(r.b) < 8 {
		r.fail()
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(r.b))
	r.b = r.b[8:]
	return v
}

func (r *recReader) str() string {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *recReader) bool() bool {
	if len(r.b) < 1 {
		r.fail()
		return false
	}
	v := r.b[0] == 1
	r.b = r.b[1:]
	return v
}

func (r *recReader) labels() labels.Labels {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return labels.EmptyLabels()
	}
	var b labels.ScratchBuilder
	for range n {
		b.Add(r.str(), r.str())
	}
	b.Sort()
	return b.Labels()
}

func (r *recReader) samples() []Sample {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	var out []Sample
	for range n {
		out = append(out, Sample{T: r.varint(), V: r.float(), ST: r.varint()})
	}
	return out
}

// onlyZerosLeft reports whether rd holds nothing but zero bytes up to its
// end (nothing at all counts too).
func onlyZerosLeft(rd *bufio.Reader) bool {
	for {
		b, err := rd.ReadByte()
		if err != nil {
			return errors.Is(err, io.EOF)
		}
		if b != 0 {
			return false
		}
	}
}

// replayFrom applies every record of the log, each to the shard of its
// output. It reports whether the log ended unclean: a torn last record, or
// zero bytes up to the end (see the top of this file). Called with every
// shard locked.
func (m *Merger) replayFrom(rd *bufio.Reader) (unclean bool, _ error) {
	for _, sh := range m.shards {
		sh.replay = true
	}
	defer func() {
		for _, sh := range m.shards {
			sh.replay = false
		}
	}()
	rp := &replayer{m: m, now: m.shards[0].now(), outs: map[uint64]*output{}, srcs: map[uint64]srcRef{}}
	var payload []byte
	for {
		var end logEnd
		var err error
		payload, end, err = readRecord(rd, payload)
		switch {
		case err != nil:
			return false, err
		case end == endClean:
			m.replayed(rp.maxID, rp.outs)
			return false, nil
		case end == endTorn: // a torn last record: its request was never answered
			m.replayed(rp.maxID, rp.outs)
			return true, nil
		case end == endZeros:
			m.replayed(rp.maxID, rp.outs)
			m.zeroTail = true // a power loss's: see OpenLog
			return true, nil
		}
		r := &recReader{b: payload[1:]}
		if err := rp.apply(payload[0], r); err != nil {
			return false, err
		}
		if r.err != nil {
			return false, r.err
		}
	}
}

// logEnd says how the log ended when readRecord read no record.
type logEnd int

const (
	endNone  logEnd = iota // a record was read
	endClean               // the end, after a whole record
	endTorn                // a record cut short by the end
	endZeros               // zero bytes up to the end: a power loss's tail
)

// readRecord reads the next record's payload (type byte first) into buf's
// storage, checking its length and checksum. A zero byte reads as an empty
// record whose checksum (of nothing) is 0: it "matches". Zeros to the end are
// a power loss's tail, and so is a record cut short by them (its checksum
// fails); the same with anything but zeros after it is damage (an error).
func readRecord(rd *bufio.Reader, buf []byte) ([]byte, logEnd, error) {
	n, err := binary.ReadUvarint(rd)
	if errors.Is(err, io.EOF) {
		return buf, endClean, nil
	}
	var crc [4]byte
	if err == nil && n > 64<<20 {
		err = fmt.Errorf("record of %d bytes", n)
	}
	if err == nil {
		_, err = io.ReadFull(rd, crc[:])
	}
	if err == nil {
		buf = append(buf[:0], make([]byte, n)...)
		_, err = io.ReadFull(rd, buf)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return buf, endTorn, nil
	}
	if err != nil {
		return buf, endNone, err
	}
	if len(buf) == 0 || crc32.Checksum(buf, crcTable) != binary.LittleEndian.Uint32(crc[:]) {
		if onlyZerosLeft(rd) {
			return buf, endZeros, nil
		}
		if len(buf) == 0 {
			return buf, endNone, errors.New("empty record")
		}
		return buf, endNone, errors.New("checksum mismatch")
	}
	return buf, endNone, nil
}

// srcRef is a replayed source and its output.
type srcRef struct {
	o *output
	s *source
}

// replayer applies the log's records to the state, one decode per record
// type; it maps the ids the records name to what they restored.
type replayer struct {
	m     *Merger
	now   time.Time
	outs  map[uint64]*output
	srcs  map[uint64]srcRef
	maxID uint64
}

// apply applies one record. A record whose fields fail to decode leaves
// r.err set; the caller reports it.
func (rp *replayer) apply(typ byte, r *recReader) error {
	switch typ {
	case recNewOutput, recOutputState:
		return rp.output(typ == recOutputState, r)
	case recNewSource, recSourceState:
		return rp.source(typ == recSourceState, r)
	case recSample:
		return rp.sample(r)
	case recFinal:
		return rp.final(r)
	case recSent:
		rp.sent(r)
	case recRecreated:
		rp.recreated(r)
	case recOrphan:
		rp.orphan(r)
	case recAdopt:
		rp.adopt(r)
	case recDetach:
		return rp.detach(r)
	case recDrop:
		rp.drop(r)
	case recForgotten:
		rp.forgotten(r)
	case recMeta:
		rp.meta(r)
	case recOrigin:
		rp.origin(r)
	case recFence:
		rp.fence(r)
	case recLossGap:
		rp.lossGap(r)
	case recOldPart:
		if o := rp.outs[r.uvarint()]; o != nil && r.err == nil {
			o.set(outOldPart, true)
		}
	case recExisted:
		if ref, ok := rp.srcs[r.uvarint()]; ok && r.err == nil {
			ref.s.existed = true
		}
	default:
		return fmt.Errorf("unknown record type %d", typ)
	}
	return nil
}

// output: recNewOutput, or recOutputState (a snapshot's, with its state).
func (rp *replayer) output(state bool, r *recReader) error {
	id, part, ls := r.uvarint(), r.str(), r.labels()
	if r.err != nil {
		return r.err
	}
	if _, dup := rp.outs[id]; dup {
		return fmt.Errorf("output %d defined twice", id)
	}
	o := rp.m.shardOf(ls.Hash()).newOutput(id, part, ls, stampOf(rp.now))
	rp.m.total.Add(1)
	if state {
		var carry float64
		carry, o.st, o.f = r.float(), r.varint(), r.varint()
		_ = r.bool() // was: learning
		o.q = r.samples()
		o.set(outLived, o.f != math.MinInt64)
		if len(r.b) > 0 && r.bool() {
			rp.m.home(o).orphan(o)
		}
		if len(r.b) > 0 { // since restarts are kept (0: none known)
			o.lifeAt = r.varint()
		}
		var carryT int64
		if len(r.b) > 0 { // since the carry's first reset is kept (0: unknown)
			carryT = r.varint()
		}
		o.setCarry(carry, carryT)
		if len(r.b) > 0 { // since a revival is told from other restarts
			o.set(outRevived, r.bool())
		}
		var dead []deadSpan
		if len(r.b) > 0 { // since the revival's dead span is kept (0: unknown)
			if from := r.varint(); from != 0 {
				// The last revival's only, its sources not told: those
				// that reset at it (see deadSpan.brought).
				dead = []deadSpan{{from: from, to: o.lifeAt}}
			}
		}
		if len(r.b) > 0 { // since the dead spans of revivals in a row are kept
			dead = nil
			for range min(r.uvarint(), maxDeadSpans) {
				dead = append(dead, deadSpan{from: r.varint(), to: r.varint(), back: r.uvarint()})
			}
		}
		rp.m.home(o).setDeadFrom(o, dead)
	}
	rp.outs[id] = o
	rp.maxID = max(rp.maxID, id)
	return nil
}

// source: recNewSource, or recSourceState (a snapshot's, with its state).
// Fields were appended over time: an older log's record ends early.
func (rp *replayer) source(state bool, r *recReader) error {
	oid, sid, ls := r.uvarint(), r.uvarint(), r.labels()
	o := rp.outs[oid]
	if r.err != nil || o == nil {
		return errors.Join(r.err, fmt.Errorf("source %d of unknown output %d", sid, oid))
	}
	s := rp.m.home(o).newSource(o, sid, ls, stampOf(rp.now))
	if !state {
		// A source added after the output's recOldPart: it came back into
		// the merge (shard.source), not retired any more. (A snapshot
		// writes recOldPart after the output's sources.)
		o.set(outOldPart, false)
	}
	if state {
		s.queue.set(r.samples())
		s.lastT, s.lastStl, s.firstT = r.varint(), r.bool(), r.varint()
		s.has, s.v, s.st, s.stale, s.resetAt, s.bornAt = r.bool(), r.float(), r.varint(), r.bool(), r.varint(), r.varint()
		if len(r.b) > 0 { // written since births became exact
			s.firstST, s.fromTomb = r.varint(), r.bool()
			s.setTombHash(r.uvarint())
		}
		if len(r.b) > 0 { // since vanished sources are told apart
			s.staleAt, s.alone = r.varint(), r.bool()
		}
		if len(r.b) > 0 { // since snapshots keep creation times
			spans := make([]createdSpan, min(r.uvarint(), createdKept))
			for i := range spans {
				spans[i] = createdSpan{from: r.varint(), to: r.varint(), v: r.float()}
			}
			rp.m.created.restore(ls, spans)
		}
		// Its last count (unknown in a log older than it: the stale
		// marker's timestamp bounds its gap, as it did then).
		s.countT = math.MinInt64
		if len(r.b) > 0 {
			s.countT = r.varint()
		}
		for _, p := range s.queue.s {
			o.arrived(p.T, stampOf(rp.now))
		}
	}
	if s.unseen {
		return nil // a placeholder of a tomb: no id of its own yet
	}
	rp.srcs[sid] = srcRef{o, s}
	rp.maxID = max(rp.maxID, sid)
	return nil
}

func (rp *replayer) sample(r *recReader) error {
	sid := r.uvarint()
	p := Sample{T: r.varint(), V: r.float(), ST: r.varint()}
	ref, ok := rp.srcs[sid]
	if r.err != nil || !ok {
		return errors.Join(r.err, fmt.Errorf("sample of unknown source %d", sid))
	}
	rp.m.home(ref.o).receive(ref.o, ref.s, p, stampOf(rp.now))
	return nil
}

func (rp *replayer) final(r *recReader) error {
	oid, t, emit := r.uvarint(), r.varint(), r.bool()
	o := rp.outs[oid]
	if r.err != nil || o == nil {
		return errors.Join(r.err, fmt.Errorf("final of unknown output %d", oid))
	}
	rp.m.home(o).finalize(o, t, emit)
	return nil
}

func (rp *replayer) sent(r *recReader) {
	oid, t := r.uvarint(), r.varint()
	if o := rp.outs[oid]; o != nil && r.err == nil {
		o.sent(t)
	}
}

func (rp *replayer) recreated(r *recReader) {
	sid, t := r.uvarint(), r.varint()
	if ref, ok := rp.srcs[sid]; ok && r.err == nil {
		ref.s.recreatedAt = t
	}
}

func (rp *replayer) orphan(r *recReader) {
	oid := r.uvarint()
	if o := rp.outs[oid]; o != nil && r.err == nil && !o.is(outOrphan) {
		rp.m.home(o).orphan(o)
	}
}

func (rp *replayer) adopt(r *recReader) {
	oid, part := r.uvarint(), r.str()
	if o := rp.outs[oid]; o != nil && r.err == nil {
		rp.m.home(o).move(o, part)
	}
}

func (rp *replayer) detach(r *recReader) error {
	oid, sid := r.uvarint(), r.uvarint()
	ref, ok := rp.srcs[sid]
	if r.err != nil || !ok || rp.outs[oid] != ref.o {
		return errors.Join(r.err, fmt.Errorf("detach of unknown source %d", sid))
	}
	rp.m.home(ref.o).detach(ref.o, func(s *source) bool { return s == ref.s })
	delete(rp.srcs, sid)
	return nil
}

func (rp *replayer) drop(r *recReader) {
	oid := r.uvarint()
	if o := rp.outs[oid]; o != nil && r.err == nil {
		rp.m.home(o).forget(o)
		delete(rp.outs, oid)
	}
}

func (rp *replayer) forgotten(r *recReader) {
	part, h, tb := r.str(), r.uvarint(), tomb{f: r.varint()}
	if len(r.b) > 0 {
		n := r.uvarint()
		for i := uint64(0); i < n && r.err == nil; i++ {
			tb.srcs = append(tb.srcs, r.uvarint())
		}
	}
	if r.err == nil {
		rp.m.shardOf(h).setTomb(outKey{part, h}, tb)
	}
}

// origin: how a partition's requests come (see idle.go). A log written
// before it was kept has none: a flush after the restart then knows only
// what the partition's name tells (see remotewrite's flushPartition).
func (rp *replayer) origin(r *recReader) {
	part, o := r.str(), series.Origin{Proto: r.str(), Header: map[string][]string{}}
	n := r.uvarint()
	for i := uint64(0); i < n && r.err == nil; i++ {
		name, k := r.str(), r.uvarint()
		if k > uint64(len(r.b)) {
			r.fail()
			break
		}
		vals := make([]string, 0, k)
		for j := uint64(0); j < k && r.err == nil; j++ {
			vals = append(vals, r.str())
		}
		o.Header[name] = vals
	}
	if r.err == nil {
		rp.m.originMu.Lock()
		if rp.m.origins == nil {
			rp.m.origins = map[string]series.Origin{}
		}
		rp.m.origins[part] = o
		rp.m.originMu.Unlock()
	}
}

// fence: a retired output's fence (see Merger.logFence), restored until
// its end.
func (rp *replayer) fence(r *recReader) {
	h, f, until := r.uvarint(), r.varint(), r.varint()
	if r.err == nil {
		rp.m.restoreFence(h, f, until, rp.m.shards[0].now())
	}
}

// meta: the state's horizon, the scrape intervals, the boot that wrote the
// log and whether it was closed, the partition scheme, the backlog horizon.
func (rp *replayer) meta(r *recReader) {
	m := rp.m
	horizon, n := r.varint(), r.uvarint()
	for i := uint64(0); i < n && r.err == nil; i++ {
		iv := r.varint()
		if i < mergeShards {
			m.shards[i].interval = iv
		}
	}
	boot, closed := m.boot, false // an old log: as if this boot
	if len(r.b) > 0 {
		boot, closed = r.str(), r.bool()
	}
	known, partitions := false, ""
	if len(r.b) > 0 { // since the partition scheme is kept
		known, partitions = r.bool(), r.str()
	}
	// The backlog horizon, kept since this field; none in an older log.
	backlog := int64(math.MinInt64)
	if len(r.b) > 0 {
		backlog = r.varint()
	}
	if r.err == nil {
		m.horizon = horizon // else the one OpenLog set: the restart
		// The backlog horizon of the process that wrote the log goes on: a
		// request of the sender it answered 503 after some of the request's
		// samples before it were stored on their own comes back now, and
		// forwarded whole it would be refused (out of order: 400, and the
		// sender drops it); split, those samples go as retries again.
		m.backlogBefore.Store(backlog)
		m.lastBoot, m.closed = boot, closed
		m.partitionsKnown, m.partitions = known, partitions
	}
}

// replayed completes a replay that read every record: the ids go on after
// the largest restored, and every restored output waits for a request again.
func (m *Merger) replayed(maxID uint64, outs map[uint64]*output) {
	if maxID > m.nextID.Load() {
		m.nextID.Store(maxID)
	}
	for _, o := range outs {
		// Every sample restored unsent may have been written: a retry.
		o.tried = int32(len(o.q))
		// A recExisted whose finalization's record is not in the log (the
		// process ended between the two) decided nothing: that
		// finalization is decided again, and logged, by this process.
		for _, s := range o.sources {
			s.existed = false
		}
		m.home(o).list(o)
	}
}
