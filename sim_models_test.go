package main

// Tests of the fault simulation's models and checker: each double behaves
// like its real peer in the ways that hurt, and each check can fail.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

func simTestWorld(t *testing.T, sc *simScenario, seed int64) *simWorld {
	t.Helper()
	if sc == nil {
		sc = &simScenario{name: "test", protocols: simRW1, minSets: 3, maxSets: 3, minRun: 5, maxRun: 5}
	}
	return newSimWorld(seed, sc, t.TempDir())
}

type simTestSample struct {
	t int64
	v float64
}

func postSim(t *testing.T, d *simTSDB, proto remoteapi.WriteMessageType, series map[string][]simTestSample, order []string, exemplarOnly string) (int, string) {
	t.Helper()
	var raw []byte
	var err error
	if proto == remoteapi.WriteV1MessageType {
		req := &prompb.WriteRequest{}
		for _, name := range order {
			ts := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: name}}}
			for _, s := range series[name] {
				ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: s.t, Value: s.v})
			}
			req.Timeseries = append(req.Timeseries, ts)
		}
		raw, err = req.Marshal()
	} else {
		st := writev2.NewSymbolTable()
		req := &writev2.Request{}
		for _, name := range order {
			ts := writev2.TimeSeries{LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", name), nil)}
			for _, s := range series[name] {
				ts.Samples = append(ts.Samples, writev2.Sample{Timestamp: s.t, Value: s.v})
			}
			if name == exemplarOnly {
				ts.Exemplars = []writev2.Exemplar{{LabelsRefs: st.SymbolizeLabels(labels.FromStrings("trace_id", "x"), nil), Value: 1, Timestamp: 1}}
			}
			req.Timeseries = append(req.Timeseries, ts)
		}
		req.Symbols = st.Symbols()
		raw, err = req.Marshal()
	}
	if err != nil {
		t.Fatal(err)
	}
	d.beginCall(d.call+1, false) // each post is a call of its own
	hreq, _ := http.NewRequest(http.MethodPost, d.url(), bytes.NewReader(snappy.Encode(nil, raw)))
	for k, v := range simHeaders(proto) {
		hreq.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(msg)
}

func storedValues(d *simTSDB, name string) string {
	var parts []string
	for _, s := range d.stored(labels.FromStrings("__name__", name)) {
		parts = append(parts, fmt.Sprintf("%d:%v", s.t, s.v))
	}
	return strings.Join(parts, " ")
}

// TestSimTSDBVerdicts: the model TSDB gives the Prometheus head's verdicts:
// newer accepted, an equal repeat accepted silently, older or a different
// value at the newest's timestamp refused; RW 1.0 rolls the whole request
// back, RW 2.0 writes what is valid; conflicts inside one request are
// dropped silently at commit (and recorded).
func TestSimTSDBVerdicts(t *testing.T) {
	w := simTestWorld(t, nil, 1)
	d := newSimTSDB(w)
	defer d.close()
	v1, v2 := remoteapi.WriteV1MessageType, remoteapi.WriteV2MessageType

	if code, msg := postSim(t, d, v1, map[string][]simTestSample{"a": {{10, 1}, {20, 2}}, "b": {{10, 5}}}, []string{"a", "b"}, ""); code != http.StatusNoContent {
		t.Fatalf("first write: %d %s", code, msg)
	}
	// The same samples again (a retry): accepted, nothing changes.
	if code, _ := postSim(t, d, v1, map[string][]simTestSample{"a": {{20, 2}}}, []string{"a"}, ""); code != http.StatusNoContent {
		t.Errorf("an equal repeat of the newest sample: %d, want 204", code)
	}
	// RW 1.0: one out-of-order sample rolls back the whole request.
	code, msg := postSim(t, d, v1, map[string][]simTestSample{"a": {{15, 9}}, "b": {{30, 6}}}, []string{"b", "a"}, "")
	if code != http.StatusBadRequest || !strings.Contains(msg, "out of order") {
		t.Errorf("out of order: %d %q, want 400 out of order", code, msg)
	}
	if got := storedValues(d, "b"); got != "10:5" {
		t.Errorf("RW 1.0 request with an out-of-order sample: b stored %q, want the request rolled back (10:5)", got)
	}
	// The newest timestamp with another value: a duplicate.
	if code, msg := postSim(t, d, v1, map[string][]simTestSample{"a": {{20, 3}}}, []string{"a"}, ""); code != http.StatusBadRequest || !strings.Contains(msg, "duplicate") {
		t.Errorf("another value at the newest timestamp: %d %q, want 400 duplicate", code, msg)
	}
	// A stale marker is a value: at the newest timestamp it is a duplicate.
	if code, _ := postSim(t, d, v1, map[string][]simTestSample{"a": {{20, math.Float64frombits(value.StaleNaN)}}}, []string{"a"}, ""); code != http.StatusBadRequest {
		t.Errorf("a stale marker at the newest timestamp: %d, want 400", code)
	}
	// RW 2.0: partial: b's valid sample is written, a's refused, 400.
	if code, _ := postSim(t, d, v2, map[string][]simTestSample{"a": {{15, 9}}, "b": {{30, 6}}}, []string{"a", "b"}, ""); code != http.StatusBadRequest {
		t.Errorf("RW 2.0 with an out-of-order sample: %d, want 400", code)
	}
	if got := storedValues(d, "b"); got != "10:5 30:6" {
		t.Errorf("RW 2.0 partial write: b stored %q, want 10:5 30:6", got)
	}
	// RW 2.0: a series with exemplars and no sample is refused (the rest
	// written).
	if code, msg := postSim(t, d, v2, map[string][]simTestSample{"c": nil, "b": {{40, 7}}}, []string{"c", "b"}, "c"); code != http.StatusBadRequest || !strings.Contains(msg, "at least one sample") {
		t.Errorf("RW 2.0 series with exemplars only: %d %q, want 400", code, msg)
	}
	if got := storedValues(d, "b"); got != "10:5 30:6 40:7" {
		t.Errorf("b stored %q, want 10:5 30:6 40:7", got)
	}
	// Inside one request, a later sample older than an earlier one of the
	// same series is dropped at commit, silently.
	if code, _ := postSim(t, d, v1, map[string][]simTestSample{"b": {{60, 9}, {50, 8}}}, []string{"b"}, ""); code != http.StatusNoContent {
		t.Errorf("conflict inside a request: %d, want 204 (dropped silently)", code)
	}
	if got := storedValues(d, "b"); got != "10:5 30:6 40:7 60:9" {
		t.Errorf("b stored %q, want 10:5 30:6 40:7 60:9", got)
	}
	if len(d.issues) != 1 || d.issues[0].check != "silent-drop" {
		t.Errorf("issues %+v, want one silent-drop", d.issues)
	}
}

// stubTarget answers the sender from a script and records what it got.
type stubTarget struct {
	w      *simWorld
	script []int // codes to answer, in order; then 204
	calls  []stubCall
}

type stubCall struct {
	at    int64
	body  []byte
	batch []simSample
	code  int
}

func (s *stubTarget) call(body []byte, batch []simSample) simAnswer {
	code := http.StatusNoContent
	if len(s.script) > 0 {
		code, s.script = s.script[0], s.script[1:]
	}
	s.calls = append(s.calls, stubCall{at: s.w.now(), body: body, batch: batch, code: code})
	return simAnswer{code: code, msg: "scripted"}
}

// TestSimTSDBFaultsIgnoreCompression: the model TSDB's faults depend on the
// request's content, not on its snappy encoding: the same protobuf request,
// compressed by golang/snappy and written as literals only (another valid
// snappy block), meets the same fault at every call.
func TestSimTSDBFaultsIgnoreCompression(t *testing.T) {
	w := simTestWorld(t, nil, 7)
	d := newSimTSDB(w)
	defer d.close()
	d.faulty = true
	req := &prompb.WriteRequest{}
	for i := range 20 {
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
			Labels:  []prompb.Label{{Name: "__name__", Value: "litellm_requests_total"}, {Name: "key", Value: strconv.Itoa(i)}},
			Samples: []prompb.Sample{{Timestamp: 1_000, Value: float64(i)}},
		})
	}
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	packed, literal := snappy.Encode(nil, raw), snappyLiterals(raw)
	if bytes.Equal(packed, literal) {
		t.Fatal("the two encodings are the same bytes: the test would prove nothing")
	}
	if back, err := snappy.Decode(nil, literal); err != nil || !bytes.Equal(back, raw) {
		t.Fatalf("the literal encoding does not decode to the request: %v", err)
	}
	faults := 0
	for call := 1; call <= 400; call++ {
		d.beginCall(call, false)
		a, b := d.fault(packed), d.fault(literal)
		if a != b {
			t.Fatalf("call %d: fault %d with one encoding, %d with the other", call, a, b)
		}
		if a != faultNone {
			faults++
		}
	}
	// About 10% of the requests meet a fault.
	if faults < 10 || faults > 100 {
		t.Errorf("%d faults in 400 calls, want about 40", faults)
	}
}

// snappyLiterals encodes raw as one snappy block of literal elements only.
func snappyLiterals(raw []byte) []byte {
	out := binary.AppendUvarint(nil, uint64(len(raw)))
	for len(raw) > 0 {
		n := min(len(raw), 60)
		out = append(out, byte(n-1)<<2) // a literal of n <= 60 bytes
		out = append(out, raw[:n]...)
		raw = raw[n:]
	}
	return out
}

// TestSimSender: the model sender batches at most max_samples_per_send,
// sends a partial batch at the deadline, retries the same batch with a
// doubling backoff on 5xx and 429, drops it on another 4xx, and keeps every
// series' samples in order.
func TestSimSender(t *testing.T) {
	w := simTestWorld(t, nil, 3)
	w.p.shards, w.p.maxPerSend, w.p.capacity = 1, 50, 200
	w.llm = newSimLiteLLM(w)
	w.snd = newSimSender(w)
	stub := &stubTarget{w: w, script: []int{500, 503, 429, 204, 400}}
	w.snd.target = stub
	w.snd.start()
	for i := range int64(8) {
		w.at(simBase+i*simInterval, func() { w.snd.scrape(w.now()) })
	}
	w.drainEnd = simBase + 4*60_000
	w.run()

	if len(stub.calls) < 6 {
		t.Fatalf("%d requests, want at least 6", len(stub.calls))
	}
	for i := 1; i <= 3; i++ {
		if !bytes.Equal(stub.calls[i].body, stub.calls[0].body) {
			t.Errorf("request %d after a %d is not the same batch", i, stub.calls[i-1].code)
		}
		gap := stub.calls[i].at - stub.calls[i-1].at
		if want := simMinBackoff << (i - 1); gap < want || gap > want+w.p.latencyMax+1 {
			t.Errorf("retry %d came %d ms after the previous answer's request, want the backoff %d ms plus the round trip", i, gap, want)
		}
	}
	if len(w.snd.drops) != 1 || w.snd.drops[0].code != http.StatusBadRequest {
		t.Errorf("drops %+v, want the batch answered 400", w.snd.drops)
	}
	if bytes.Equal(stub.calls[5].body, stub.calls[4].body) {
		t.Error("a batch answered 400 was sent again")
	}
	last := map[*simSeries]int64{}
	for i, c := range stub.calls {
		if len(c.batch) > w.p.maxPerSend {
			t.Errorf("request %d holds %d samples, more than max_samples_per_send %d", i, len(c.batch), w.p.maxPerSend)
		}
		if i > 0 && bytes.Equal(c.body, stub.calls[i-1].body) {
			continue // a retry
		}
		for _, smp := range c.batch {
			if smp.t <= last[smp.s] {
				t.Errorf("series %s: sample at %d sent after one at %d", smp.s.id, smp.t, last[smp.s])
			}
			last[smp.s] = smp.t
		}
	}
	// The last scrape's samples (fewer than a batch) went at the deadline.
	lastScrape := simBase + 7*simInterval
	sentAt := int64(0)
	for _, c := range stub.calls {
		for _, smp := range c.batch {
			if smp.t == lastScrape && sentAt == 0 {
				sentAt = c.at
			}
		}
	}
	if sentAt == 0 || sentAt-lastScrape > simDeadline+simMaxBackoff {
		t.Errorf("the last scrape's samples went at %d ms after it, want within the batch deadline", sentAt-lastScrape)
	}
}

// TestSimCheckerCatches: on a run that passes (no collision, RW 1.0), each
// corruption of what the TSDB stored or the sender lost is reported by its
// check.
func TestSimCheckerCatches(t *testing.T) {
	sc := &simScenario{name: "control", protocols: simRW1, solo: true, births: true, minSets: 6, maxSets: 6, minRun: 8, maxRun: 8}
	var w *simWorld
	var outs []*llmSet
	for seed := int64(0); seed < 20 && len(outs) < 4; seed++ {
		w = newSimWorld(seed, sc, t.TempDir())
		if err := w.setup(); err != nil {
			t.Fatal(err)
		}
		w.run()
		w.fix.close()
		w.db.close()
		if res := w.check(); len(res.violations) > 0 {
			t.Fatalf("seed %d of the control fails: %v\n%s", seed, res.checks(), res.trace)
		}
		outs = outs[:0]
		for _, set := range w.llm.sets {
			if len(w.db.stored(outputLabels(kindSrcTotal, set))) >= 6 {
				outs = append(outs, set)
			}
		}
	}
	if len(outs) < 4 {
		t.Fatal("no seed with 4 outputs")
	}
	series := func(set *llmSet) *dbSeries { return w.db.series[outputLabels(kindSrcTotal, set).String()] }
	// value: one sample off by one.
	series(outs[0]).samples[3].v++
	// missing: one sample gone.
	s1 := series(outs[1])
	s1.samples = append(s1.samples[:2], s1.samples[3:]...)
	// reset: a sample lower than the one before.
	s2 := series(outs[2])
	s2.samples[4].v = s2.samples[3].v - 1
	// invented: a sample between two scrapes.
	s3 := series(outs[3])
	s3.samples = append(s3.samples, dbSample{t: s3.samples[len(s3.samples)-1].t + 1, v: 1e6})
	// none-leak: a None series stored.
	none := simLabels(kindSrcTotal, outs[0], srcNone)
	w.db.series[none.String()] = &dbSeries{lbls: none, samples: []dbSample{{t: simBase, v: 1}}}
	// untouched: up's value changed.
	up := w.snd.series["up"]
	w.db.series[up.lbls.String()].samples[2].v = 7
	// dropped: a batch whose untouched sample never arrived.
	w.snd.drops = append(w.snd.drops, simDrop{at: simBase, code: 400, msg: "test", batch: []simSample{{s: up, t: simBase + 1, v: 1}}})

	res := w.check()
	got := strings.Join(res.checks(), " ")
	for _, want := range []string{"value/", "missing/", "reset/", "invented", "none-leak", "untouched", "dropped"} {
		if !strings.Contains(got, want) {
			t.Errorf("checks %q: %s not reported", got, want)
		}
	}
}

// TestSimDeterministic: a seed replays exactly, faults and all.
func TestSimDeterministic(t *testing.T) {
	var sc *simScenario
	for _, s := range simScenarios {
		if s.name == "all" {
			sc = s
		}
	}
	for _, seed := range []int64{5, 6} {
		a, b := runSimSeed(sc, seed), runSimSeed(sc, seed)
		if a.summary != b.summary || fmt.Sprint(a.violations) != fmt.Sprint(b.violations) {
			t.Errorf("seed %d ran twice differently:\n%s\n%v\n---\n%s\n%v", seed, a.summary, a.checks(), b.summary, b.checks())
		}
	}
}

// TestSimIdleFlush: the simulated rwfix runs main's idle flush. Reload seed
// 326: forward_headers turned on orphans an output that holds a stale
// marker, whose label set then comes back only raw (keep_distinct); without
// the flush the marker waited for a request of the old partition, and went
// out (refused, out of order) only once forward_headers was off again.
func TestSimIdleFlush(t *testing.T) {
	var sc *simScenario
	for _, s := range simScenarios {
		if s.name == "reload" {
			sc = s
		}
	}
	if res := runSimSeed(sc, 326); len(res.violations) > 0 {
		t.Fatalf("reload seed 326: %v\n%s", res.checks(), res.trace)
	}
}

// TestSimCheckerHistMarked: the user rule's histogram is untouched when each
// sample is stored exactly, raw or under keep_distinct's marker (forwarded
// while that policy was on, whenever it was scraped: sim all/386); one stored
// under neither, or with other bits under the marker, is still reported.
func TestSimCheckerHistMarked(t *testing.T) {
	s := &simSeries{id: "hist/1", kind: kindHist}
	hist := func(c uint64) *histogram.Histogram {
		return &histogram.Histogram{Schema: 0, Count: c, Sum: float64(c), ZeroThreshold: 0.001,
			PositiveSpans: []histogram.Span{{Offset: 0, Length: 1}}, PositiveBuckets: []int64{int64(c)}}
	}
	for i := range 3 {
		s.wal = append(s.wal, simSample{s: s, t: simBase + int64(i)*simInterval, h: hist(uint64(i + 1))})
	}
	db := func(idx ...int) []dbSample {
		var out []dbSample
		for _, i := range idx {
			out = append(out, dbSample{t: s.wal[i].t, h: []byte(s.wal[i].h.String())})
		}
		return out
	}
	raw := db(0, 2)
	if _, msg := sameAsSent(s, withMarked(raw, db(1)), simBase+time.Hour.Milliseconds()); msg != "" {
		t.Errorf("a sample stored under the marker: %s", msg)
	}
	if _, msg := sameAsSent(s, withMarked(db(0, 1, 2), db(1)), simBase+time.Hour.Milliseconds()); msg != "" {
		t.Errorf("a sample stored raw and under the marker: %s", msg)
	}
	if at, msg := sameAsSent(s, withMarked(raw, nil), simBase+time.Hour.Milliseconds()); msg == "" || at != s.wal[1].t {
		t.Errorf("a sample stored nowhere: got %q at %d, want it reported at %d", msg, at, s.wal[1].t)
	}
	wrong := db(1)
	wrong[0].h = []byte(hist(9).String())
	if _, msg := sameAsSent(s, withMarked(raw, wrong), simBase+time.Hour.Milliseconds()); msg == "" {
		t.Error("a sample with other bits under the marker: not reported")
	}
}
