package relabel

import (
	"bufio"
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/rwfix/rwfix/remotewrite/series"
)

// logAfterTwoScrapes runs an output through two scrapes (everything sent)
// and returns the directory of its log and the harness, its records written.
func logAfterTwoScrapes(t *testing.T) (string, *harness) {
	t.Helper()
	dir := t.TempDir()
	h := newHarness(t, dir)
	h.scrape(0, 1, 10)
	h.scrape(step, 2, 20)
	h.drain()
	h.m.flushLog()
	return dir, h
}

// crash stops m's background fsync as a killed process would, without the
// final snapshot that Close writes.
func crash(m *Merger) {
	m.log.mu.Lock()
	defer m.log.mu.Unlock()
	close(m.log.done)
}

// appendToLog appends b to the log file as a crash would leave it.
func appendToLog(t *testing.T, dir string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, logName), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

// frameOf is one record as the log writes it: a sample of source id.
func frameOf(id uint64) []byte {
	var l mergeLog
	l.begin(recSample)
	l.uvarint(id)
	l.varint(3 * step)
	l.float(42)
	l.varint(0)
	return l.frame(nil)
}

// How the log's end is read after a crash: a torn record or zeros up to the
// end (a power loss on ext4/XFS leaves the file's length but zeroed blocks)
// keep the state and say the end was unclean; damage with data after it is
// corruption, and the state is set aside.
func TestMergeLogEnds(t *testing.T) {
	zeros := make([]byte, 4096)
	// A record whose second half never reached the disk: its bytes read as
	// zeros, like the blocks after it.
	cut := frameOf(999) // a source that does not exist: applied, it would be corruption
	clear(cut[len(cut)/2:])
	for _, tc := range []struct {
		name    string
		tail    []byte
		unclean bool
		corrupt bool
	}{
		{"clean", nil, false, false},
		{"torn record", []byte{50, 1, 2}, true, false},
		{"zeros to the end", zeros, true, false},
		{"one zero byte", []byte{0}, true, false},
		{"a record cut short by zeros", append(append([]byte(nil), cut...), zeros...), true, false},
		{"an empty record, then a record", append(make([]byte, 5), frameOf(1)...), false, true},
		{"zeros, then data", append(append([]byte(nil), zeros...), 7), false, true},
		{"a record cut short by zeros, then data", append(append(append([]byte(nil), cut...), zeros...), 1), false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, h := logAfterTwoScrapes(t)
			crash(h.m)
			appendToLog(t, dir, tc.tail)
			m := NewMerger(DefaultCollisionConfig(), nil)
			n, err := m.OpenLog(dir)
			defer m.Close()
			if tc.corrupt {
				if !errors.Is(err, ErrCorruptLog) || n != 0 {
					t.Fatalf("n=%d err=%v, want the state set aside as corrupt", n, err)
				}
				return
			}
			if err != nil || n != 1 {
				t.Fatalf("n=%d err=%v, want the output restored", n, err)
			}
			if got := m.UncleanEnd(); got != tc.unclean {
				t.Fatalf("UncleanEnd() = %v, want %v", got, tc.unclean)
			}
			if _, err := os.Stat(filepath.Join(dir, logName+".corrupt")); err == nil {
				t.Fatal("a log with a clean or torn end was set aside as corrupt")
			}
		})
	}
}

// After a zero-filled tail the merge goes on exactly, and its new records
// are read back by the next restart: they do not follow the zeros (the
// compaction at open rewrote the file), so a second crash keeps everything.
func TestMergeZeroFilledTailThenSecondRestart(t *testing.T) {
	dir, h := logAfterTwoScrapes(t)
	const zeroed = 8192
	appendToLog(t, dir, make([]byte, zeroed))
	crash(h.m)
	h.m = h.open(dir) // power loss: no Close
	if !h.m.UncleanEnd() {
		t.Fatal("the zero-filled end was not reported")
	}
	// The sender's next scrapes come after the restart (before it, the
	// power loss makes every output timestamp unknowable: see knowable).
	base := h.clock.now().UnixMilli() - 2*step
	h.scrape(base+2*step, 3, 30)
	h.clock.add(step * time.Millisecond)
	h.req(g(outTotal, srcNone, sp(base+3*step, 4))) // held: the 500 of this scrape has not come
	b, err := os.ReadFile(filepath.Join(dir, logName))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) >= zeroed {
		t.Fatalf("the log (%d bytes) still holds the zeroed blocks: new records follow them", len(b))
	}
	crash(h.m)
	h.m = h.open(dir) // SIGKILL: no Close
	if h.m.UncleanEnd() {
		t.Fatal("the second restart read an unclean end; the log ends at a record")
	}
	h.req(g(outTotal, src500, sp(base+3*step, 40)))
	h.scrape(base+4*step, 5, 50)
	h.drain()
	defer h.m.Close()
	got := h.values(outTotal)
	for i, want := range []float64{11, 22, 33, 44, 55} {
		ts := int64(i) * step
		if i >= 2 {
			ts += base
		}
		if got[ts] != want {
			t.Fatalf("at %d: %v, want %v (all %v)", ts, got[ts], want, got)
		}
	}
}

// A compaction's temporary file left by a crash is removed at the next
// start; the log and other files stay.
func TestOpenLogRemovesStaleSnapshots(t *testing.T) {
	dir, h := logAfterTwoScrapes(t)
	if err := h.m.Close(); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, ".merge-1234567.tmp")
	other := filepath.Join(dir, "notes.tmp")
	for _, p := range []string{stale, other} {
		if err := os.WriteFile(p, []byte("half a snapshot"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m := NewMerger(DefaultCollisionConfig(), nil)
	if n, err := m.OpenLog(dir); err != nil || n != 1 {
		t.Fatalf("n=%d err=%v", n, err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the interrupted compaction's file is still there: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Fatalf("a file that is not the merge's was removed: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}

// The sender's backlog before the horizon goes as retries after a start
// without state (Pipeline.backlogRetries), and goes on doing so after a
// restart on its log: a request the process before answered 503 once some of
// those samples were stored on their own comes back, and forwarded whole it
// would be refused (out of order). A restart on the log keeps the first
// start's backlog horizon, not its own start.
func TestBacklogHorizonKeptInLog(t *testing.T) {
	dir := t.TempDir()
	m := NewMerger(DefaultCollisionConfig(), nil)
	if _, err := m.OpenLog(dir); err != nil {
		t.Fatal(err)
	}
	first := m.backlogBefore.Load()
	if first != m.horizon || first == math.MinInt64 {
		t.Fatalf("first start: backlogBefore %d, want the horizon %d", first, m.horizon)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m = NewMerger(DefaultCollisionConfig(), nil)
	m.SetProcessClock(func() time.Time { return time.UnixMilli(first).Add(time.Hour) })
	if _, err := m.OpenLog(dir); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Close() }()
	if b := m.backlogBefore.Load(); b != first {
		t.Fatalf("restart on its log: backlogBefore %d, want the first start's %d", b, first)
	}
}

// withoutRecords rewrites the log in dir without its records of type typ,
// as a version of rwfix that did not write them would have left it.
func withoutRecords(t *testing.T, dir string, typ byte) {
	t.Helper()
	path := filepath.Join(dir, logName)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd := bufio.NewReader(f)
	var out, payload []byte
	dropped := 0
	for {
		var end logEnd
		payload, end, err = readRecord(rd, payload)
		if err != nil || (end != endNone && end != endClean) {
			t.Fatalf("reading the log: %v (end %d)", err, end)
		}
		if end == endClean {
			break
		}
		if payload[0] == typ {
			dropped++
			continue
		}
		l := mergeLog{rec: payload}
		out = l.frame(out)
	}
	if dropped == 0 {
		t.Fatalf("the log holds no record of type %d: the test shows nothing", typ)
	}
	if err := os.WriteFile(path, out, 0o640); err != nil {
		t.Fatal(err)
	}
}

// Each partition's origin (its sender's protocol and forwarded headers,
// which a flush after a restart sends with) is kept in the log: a restart
// after a crash restores it from its record, one after a clean stop from
// the snapshot, the latest when it changed; the origin of a partition with
// no output left is dropped at the restart. A log written before origins
// were kept replays as before: the outputs restored, the origins unknown.
func TestMergeLogKeepsOrigins(t *testing.T) {
	v2 := series.Origin{Proto: "io.prometheus.write.v2.Request", Header: map[string][]string{"X-Scope-Orgid": {"a"}, "X-Scope-Team": {"x", "y"}}}
	v1 := series.Origin{Proto: "prometheus.WriteRequest", Header: map[string][]string{"X-Scope-Orgid": {"a"}, "X-Scope-Team": {"x", "y"}}}
	const part, idle = "a\xffx\xff", "b\xff"
	dir := t.TempDir()
	h := newHarness(t, dir)
	h.m.KeepOrigin(idle, v1) // a tenant with no output
	h.m.KeepOrigin(part, v2)
	tx := h.m.Begin(part)
	if !tx.Add(outTotal, []labels.Labels{srcNone}, [][]Sample{sp(0, 1)}) {
		t.Fatal("state full")
	}
	tx.Collect()
	tx.Done(true, nil)
	h.m.flushLog()
	origin := func(part string) (series.Origin, bool) {
		t.Helper()
		o, ok := h.m.Origin(part)
		if ok && o.Header == nil {
			t.Fatalf("partition %q: an origin without its header map", part)
		}
		return o, ok
	}

	crash(h.m) // SIGKILL: the records are in the log
	h.m = h.open(dir)
	if o, ok := origin(part); !ok || !sameOrigin(o, v2) {
		t.Fatalf("after a crash: origin %v %v, want %v", o, ok, v2)
	}
	if o, ok := origin(idle); ok {
		t.Fatalf("after a crash: the origin %v of a partition without outputs was kept", o)
	}

	h.m.KeepOrigin(part, v1) // the sender went back to RW 1.0
	if err := h.m.Close(); err != nil {
		t.Fatal(err)
	}
	h.m = h.open(dir)
	if o, ok := origin(part); !ok || !sameOrigin(o, v1) {
		t.Fatalf("after a clean stop: origin %v %v, want the latest, %v", o, ok, v1)
	}

	if err := h.m.Close(); err != nil {
		t.Fatal(err)
	}
	withoutRecords(t, dir, recOrigin)
	h.m = h.open(dir)
	defer h.m.Close()
	if n := h.m.outputs(); n != 1 || !h.m.Pending() {
		t.Fatalf("an older log: %d outputs restored (pending %v), want its one, holding its sample", n, h.m.Pending())
	}
	if o, ok := origin(part); ok {
		t.Fatalf("an older log: origin %v, want none", o)
	}
}

// An output's snapshot record keeps the dead spans of its revivals in a
// row, and which sources each brought back; an older record's single dead
// span (its start: deadFrom) is read as the last revival's, its sources told
// as then (those that reset at it: back 0).
func TestMergeDeadSpansInTheSnapshot(t *testing.T) {
	read := func(rec []byte) []deadSpan {
		t.Helper()
		m := NewMerger(DefaultCollisionConfig(), nil)
		payload, end, err := readRecord(bufio.NewReader(bytes.NewReader(rec)), nil)
		if err != nil || end != endNone {
			t.Fatalf("record not read: %v (%v)", err, end)
		}
		rp := &replayer{m: m, now: m.shards[0].now(), outs: map[uint64]*output{}, srcs: map[uint64]srcRef{}}
		if err := rp.apply(payload[0], &recReader{b: payload[1:]}); err != nil {
			t.Fatal(err)
		}
		o := rp.outs[1]
		return m.home(o).deadSince(o)
	}
	o := &output{id: 1, labels: outTotal, f: 50, lifeAt: 40}
	o.set(outRevived, true)
	dead := []deadSpan{{from: 10, to: 20, back: 1}, {from: 30, to: 40, back: 3}}
	l := &mergeLog{}
	if got := read(outputState(l, o, dead)); !slices.Equal(got, dead) {
		t.Errorf("dead spans %v read back, want %v", got, dead)
	}
	// The record as written before the spans: deadFrom last.
	l.begin(recOutputState)
	l.uvarint(o.id)
	l.str(o.part)
	l.labels(o.labels)
	l.float(0)
	l.varint(o.st)
	l.varint(o.f)
	l.bool(false)
	l.samples(o.q)
	l.bool(false)
	l.varint(o.lifeAt)
	l.varint(0)
	l.bool(true)
	l.varint(30)
	if got, want := read(l.frame(nil)), []deadSpan{{from: 30, to: 40}}; !slices.Equal(got, want) {
		t.Errorf("an older record: dead spans %v read back, want %v", got, want)
	}
}
