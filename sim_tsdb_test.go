package main

// The model TSDB: Prometheus' remote-write receiver in front of its head, in
// the ways that hurt a relay (read from storage/remote/write_handler.go and
// tsdb's appender, Prometheus v0.316.0):
//
//   - Per series, against what is committed: a sample older than the
//     series' newest is out of order; at the newest's timestamp with another
//     value (bit for bit: a stale marker is a value) it is a duplicate; with
//     the same value it is accepted and changes nothing.
//   - RW 1.0: one such error rolls the WHOLE request back and answers 400
//     (the sender then drops its batch).
//   - RW 2.0: partial writes: what is valid is written, the rest answered
//     with one 400 listing the errors; a series with neither samples nor
//     histograms (exemplars only) is such an error. The Written headers count
//     what was written. This is what writeV2 does: it commits on a 4xx and
//     rolls back only on a 5xx.
//   - Inside one request, samples are checked against the committed state and
//     then committed in order: one that conflicts with an earlier sample of
//     the same request is dropped silently at commit (the head counts it in
//     a metric, the sender never hears of it). rwfix must never send that.
//
// Faults the sim injects: 5xx and 429 (nothing written), outages (503), and
// lost answers (written, then the connection closed or a 500): decided per
// request from the seed, the rwfix call and the decompressed body, so that two requests
// rwfix sends in parallel get the same faults whatever order they arrive in.

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"

	"github.com/golang/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

type dbSample struct {
	t  int64
	v  float64
	st int64
	h  []byte // a native histogram (its String(), the same for both protocols); nil for a float sample
}

func (a dbSample) same(b dbSample) bool {
	if a.h != nil || b.h != nil {
		return bytes.Equal(a.h, b.h)
	}
	return math.Float64bits(a.v) == math.Float64bits(b.v)
}

type dbSeries struct {
	lbls    labels.Labels
	samples []dbSample
}

// dbIssue is something the TSDB saw that rwfix must never cause (a silent
// drop inside a request, one series in two concurrent requests).
type dbIssue struct {
	check  string
	at     int64
	series string
	msg    string
}

type simTSDB struct {
	w     *simWorld
	srv   *httptest.Server
	write http.Handler

	mu     sync.Mutex
	series map[string]*dbSeries
	// received: by series, the timestamps of its samples that some request
	// carried to the receiver (stored, or refused and rolled back); kept
	// where a data directory may be lost (simFleet.crash).
	received map[string]map[int64]bool
	// refusedAt: by series, when a request that carried it was last
	// refused (400): while an output's re-sent samples are refused and
	// bisected, its newer samples wait behind them in rwfix's state.
	refusedAt map[string]int64
	// The rwfix call being made: its number, whether its requests are lost
	// (rwfix died before forwarding), and which series each of its requests
	// carried.
	call       int
	dropCall   bool
	callLost   bool // a request of the call was written and its answer lost
	callSeries map[string]int
	callReqs   int
	// flight counts, by series, the requests in the receiver now that carry
	// it: two at once were sent in parallel (rwfix's request with the
	// sender's series and its re-sent merged samples), and their order is
	// undefined. (Requests sent one after the other, as the halves of a
	// bisected retry, never overlap.)
	flightMu    sync.Mutex
	flight      map[string]int
	outage      bool
	faulty      bool // per-request faults on (the run phase of an upstream scenario)
	issues      []dbIssue
	faults      []simFault // per-request faults injected (for the checker's causes)
	requests    int
	refused     int  // 400s to a request (whole or in part)
	discard     bool // answer, keep nothing (the churn test measures rwfix's memory)
	lostAnswers int
	outages     []simWindow // planned
}

func newSimTSDB(w *simWorld) *simTSDB {
	d := &simTSDB{w: w, series: map[string]*dbSeries{}, received: map[string]map[int64]bool{}, refusedAt: map[string]int64{}, callSeries: map[string]int{}, flight: map[string]int{}}
	d.write = remoteapi.NewWriteHandler(d, remoteapi.MessageTypes{remoteapi.WriteV1MessageType, remoteapi.WriteV2MessageType})
	d.srv = httptest.NewServer(d)
	return d
}

func (d *simTSDB) url() string { return d.srv.URL + "/api/v1/write" }

func (d *simTSDB) close() { d.srv.Close() }

// schedule plans the upstream's outages, and turns per-request faults on for
// the run phase.
func (d *simTSDB) schedule() {
	w := d.w
	if w.sc.upstreamFaults {
		d.faulty = true
		w.at(w.runEnd, func() { d.mu.Lock(); d.faulty = false; d.mu.Unlock() })
	}
	if !w.sc.outages {
		return
	}
	for range 1 + w.rngFaults.IntN(2) {
		from := between(w.rngFaults, simBase+w.p.runFor/10, w.runEnd)
		to := min(from+30_000+w.rngFaults.Int64N(5*60_000), w.runEnd)
		d.outages = append(d.outages, simWindow{from, to})
		w.at(from, func() {
			d.mu.Lock()
			d.outage = true
			d.mu.Unlock()
			w.note(-1, "upstream outage from %s to %s", rel(from), rel(to))
			w.fault("outage")
		})
		w.at(to, func() {
			d.mu.Lock()
			d.outage = false
			d.mu.Unlock()
			w.fault("outage")
		})
	}
}

// beginCall tells the TSDB that rwfix is about to handle a request; drop:
// rwfix will die before it forwards anything.
func (d *simTSDB) beginCall(call int, drop bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.call, d.dropCall, d.callReqs, d.callLost = call, drop, 0, false
	clear(d.callSeries)
}

type dbFault uint8

const (
	faultNone       dbFault = iota
	faultDrop               // never arrives: rwfix died before forwarding
	faultOutage             // 503, nothing written
	fault5xx                // 500, nothing written
	fault429                // 429 with Retry-After, nothing written
	faultLostAnswer         // written, then the connection closes
	faultLost500            // written, then a 500
)

// fault decides what happens to one request, from the seed, the call and
// the content only: the decompressed body (the protobuf request the
// receiver decodes), so that the faults do not depend on how rwfix
// compresses it, which a real TSDB's behaviour does not either. A body that
// is not snappy (refused by the receiver) is hashed as it came.
func (d *simTSDB) fault(body []byte) dbFault {
	if raw, err := snappy.Decode(nil, body); err == nil {
		body = raw
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.dropCall:
		return faultDrop
	case d.outage:
		return faultOutage
	case !d.faulty:
		return faultNone
	}
	h := fnv.New64a()
	_, _ = h.Write(body)
	r := rand.New(rand.NewPCG(uint64(d.w.seed)^h.Sum64(), uint64(d.call)))
	switch u := r.Float64(); {
	case u < 0.03:
		return fault5xx
	case u < 0.05:
		return fault429
	case u < 0.08:
		return faultLostAnswer
	case u < 0.10:
		return faultLost500
	}
	return faultNone
}

func (d *simTSDB) countLost() {
	d.mu.Lock()
	d.lostAnswers++
	d.callLost = true
	d.mu.Unlock()
}

// lostInCall reports whether the current call had a request written whose
// answer was lost.
func (d *simTSDB) lostInCall() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.callLost
}

func hangUp(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	http.Error(w, "connection lost", http.StatusInternalServerError)
}

func (d *simTSDB) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	f := d.fault(body)
	switch f {
	case fault5xx, fault429, faultLostAnswer, faultLost500:
		kind := "upstream-error"
		if f == faultLostAnswer || f == faultLost500 {
			kind = "lost-answer"
		}
		d.mu.Lock()
		d.faults = append(d.faults, simFault{at: d.w.now(), kind: kind})
		d.mu.Unlock()
	}
	switch f {
	case faultDrop:
		hangUp(w)
	case faultOutage:
		http.Error(w, "upstream outage", http.StatusServiceUnavailable)
	case fault5xx:
		http.Error(w, "injected failure", http.StatusInternalServerError)
	case fault429:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "injected rate limit", http.StatusTooManyRequests)
	case faultLostAnswer:
		d.countLost()
		d.write.ServeHTTP(httptest.NewRecorder(), r)
		hangUp(w)
	case faultLost500:
		d.countLost()
		d.write.ServeHTTP(httptest.NewRecorder(), r)
		http.Error(w, "injected failure after the write", http.StatusInternalServerError)
	default:
		d.write.ServeHTTP(w, r)
	}
}

// dbAppend is one sample of a request on its way to the head.
type dbAppend struct {
	key  string
	lbls labels.Labels
	smp  dbSample
}

// Store is the receiver: r.Body is the decompressed request.
func (d *simTSDB) Store(r *http.Request, msgType remoteapi.WriteMessageType) (*remoteapi.WriteResponse, error) {
	resp := remoteapi.NewWriteResponse()
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		resp.SetStatusCode(http.StatusBadRequest)
		return resp, err
	}
	keys := seriesKeys(raw, msgType)
	d.flightMu.Lock()
	var overlap []string
	for _, k := range keys {
		if d.flight[k] > 0 {
			overlap = append(overlap, k)
		}
		d.flight[k]++
	}
	d.flightMu.Unlock()
	defer func() {
		d.flightMu.Lock()
		for _, k := range keys {
			if d.flight[k]--; d.flight[k] == 0 {
				delete(d.flight, k)
			}
		}
		d.flightMu.Unlock()
	}()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, k := range overlap {
		d.issue("concurrent", k, "in two requests in the receiver at once (sent in parallel: their order is undefined)")
	}
	d.requests++
	d.callReqs++
	req := d.callReqs
	var (
		apps  []dbAppend
		errs  []error
		exs   int
		sb    labels.ScratchBuilder
		check = func(ls labels.Labels, smp dbSample) {
			key := ls.String()
			d.callSeries[key] = req
			if d.w.sc.dataDirLoss && !d.discard {
				if d.received[key] == nil {
					d.received[key] = map[int64]bool{}
				}
				d.received[key][smp.t] = true
			}
			if s := d.series[key]; s != nil && len(s.samples) > 0 {
				n := len(s.samples)
				last := s.samples[n-1]
				switch {
				case smp.t < last.t:
					errs = append(errs, fmt.Errorf("out of order sample for series %s: %d < %d", key, smp.t, last.t))
					return
				case smp.t == last.t && !last.same(smp):
					errs = append(errs, fmt.Errorf("duplicate sample for timestamp for series %s at %d", key, smp.t))
					return
				}
			}
			apps = append(apps, dbAppend{key: key, lbls: ls, smp: smp})
		}
	)
	if msgType == remoteapi.WriteV1MessageType {
		var wr prompb.WriteRequest
		if err := wr.Unmarshal(raw); err != nil {
			resp.SetStatusCode(http.StatusBadRequest)
			return resp, err
		}
		for _, ts := range wr.Timeseries {
			ls := ts.ToLabels(&sb, nil)
			for _, p := range ts.Samples {
				check(ls, dbSample{t: p.Timestamp, v: p.Value})
			}
			for _, h := range ts.Histograms {
				check(ls, dbSample{t: h.Timestamp, h: []byte(h.ToIntHistogram().String())})
			}
		}
		if len(errs) > 0 {
			// The whole request is rolled back.
			d.refused++
			d.markRefused(keys)
			resp.SetStatusCode(http.StatusBadRequest)
			return resp, errors.Join(errs...)
		}
		d.commit(apps)
		return resp, nil
	}
	var wr writev2.Request
	if err := wr.Unmarshal(raw); err != nil {
		resp.SetStatusCode(http.StatusBadRequest)
		return resp, err
	}
	for _, ts := range wr.Timeseries {
		ls, err := ts.ToLabels(&sb, wr.Symbols)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(ts.Samples) == 0 && len(ts.Histograms) == 0 {
			errs = append(errs, fmt.Errorf("TimeSeries must contain at least one sample or histogram for series %v", ls.String()))
			continue
		}
		for _, p := range ts.Samples {
			check(ls, dbSample{t: p.Timestamp, v: p.Value, st: p.StartTimestamp})
		}
		for _, h := range ts.Histograms {
			check(ls, dbSample{t: h.Timestamp, h: []byte(h.ToIntHistogram().String()), st: h.StartTimestamp})
		}
		exs += len(ts.Exemplars)
	}
	written := d.commit(apps)
	resp.Add(remoteapi.WriteResponseStats{Samples: written[0], Histograms: written[1], Exemplars: exs})
	if len(errs) > 0 {
		d.refused++
		d.markRefused(keys)
		resp.SetStatusCode(http.StatusBadRequest)
		return resp, errors.Join(errs...)
	}
	return resp, nil
}

// commit appends in request order; a sample that conflicts with an earlier
// one of the same request is dropped silently, as the head does at commit.
func (d *simTSDB) commit(apps []dbAppend) (written [2]int) {
	if d.discard {
		return [2]int{len(apps), 0}
	}
	for _, a := range apps {
		s := d.series[a.key]
		if s == nil {
			s = &dbSeries{lbls: a.lbls}
			d.series[a.key] = s
		}
		if n := len(s.samples); n > 0 {
			last := s.samples[n-1]
			if a.smp.t < last.t || (a.smp.t == last.t && !last.same(a.smp)) {
				d.issue("silent-drop", a.key, fmt.Sprintf("%s: sample at %s dropped at commit: it conflicts with another sample of the same request (newest %s)", a.key, rel(a.smp.t), rel(last.t)))
				continue
			}
			if a.smp.t == last.t {
				continue
			}
		}
		s.samples = append(s.samples, a.smp)
		if a.smp.h != nil {
			written[1]++
		} else {
			written[0]++
		}
	}
	return written
}

// issue records a problem; called with d.mu held.
func (d *simTSDB) issue(check, series, msg string) {
	if len(d.issues) < 1000 {
		d.issues = append(d.issues, dbIssue{check: check, at: d.w.now(), series: series, msg: msg})
	}
}

// sentNotStored reports whether a request carried a sample of series ls at
// t to the receiver while none is stored at t: the sender of that sample
// (rwfix) had it and did not get it stored.
func (d *simTSDB) sentNotStored(ls labels.Labels, t int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	key := ls.String()
	if !d.received[key][t] {
		return false
	}
	if s := d.series[key]; s != nil {
		if _, found := slices.BinarySearchFunc(s.samples, t, func(a dbSample, t int64) int { return cmp.Compare(a.t, t) }); found {
			return false
		}
	}
	return true
}

// markRefused notes that a request carrying the series keys was refused
// now; called with d.mu held.
func (d *simTSDB) markRefused(keys []string) {
	for _, k := range keys {
		d.refusedAt[k] = d.w.now()
	}
}

// refusedSince reports whether a request that carried series ls was
// refused after t.
func (d *simTSDB) refusedSince(ls labels.Labels, t int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	at, ok := d.refusedAt[ls.String()]
	return ok && at > t
}

// stored returns the samples stored for labels ls.
func (d *simTSDB) stored(ls labels.Labels) []dbSample {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.series[ls.String()]; s != nil {
		return s.samples
	}
	return nil
}

// seriesKeys lists the series of a request, each once.
func seriesKeys(raw []byte, msgType remoteapi.WriteMessageType) []string {
	seen := map[string]bool{}
	var keys []string
	var sb labels.ScratchBuilder
	add := func(ls labels.Labels) {
		if k := ls.String(); !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	if msgType == remoteapi.WriteV1MessageType {
		var wr prompb.WriteRequest
		if wr.Unmarshal(raw) == nil {
			for _, ts := range wr.Timeseries {
				add(ts.ToLabels(&sb, nil))
			}
		}
		return keys
	}
	var wr writev2.Request
	if wr.Unmarshal(raw) == nil {
		for _, ts := range wr.Timeseries {
			if ls, err := ts.ToLabels(&sb, wr.Symbols); err == nil {
				add(ls)
			}
		}
	}
	return keys
}
