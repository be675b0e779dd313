package main

// The model sender: Prometheus' scrape loop and remote-write queue manager,
// in the ways that matter to rwfix.
//
//   - Every scrape appends all its samples, at one timestamp, to the WAL; a
//     series that vanished gets a stale marker (NaN 0x7ff0000000000002), and
//     a failed scrape gives one to every series of the previous scrape (and
//     up=0).
//   - The WAL is read in order into shards, by the hash of each series'
//     labels; a full shard stops the reader (every shard waits), as
//     Prometheus' enqueue blocks.
//   - Each shard is a FIFO sending one request at a time: a batch of
//     max_samples_per_send as soon as it holds one, else what it holds when
//     its batch_send_deadline timer fires (reset after every send). One
//     TimeSeries per sample, as Prometheus writes them.
//   - On 5xx, 429 or a transport error the SAME batch is sent again after a
//     backoff (30 ms doubling to 5 s, or Retry-After); on any other 4xx the
//     batch is dropped — counted, since rwfix must never cause that.

import (
	"math"
	"math/rand/v2"
	"strconv"

	"github.com/golang/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

type seriesKind uint8

const (
	kindUp         seriesKind = iota // up{job="litellm"}: untouched
	kindOKTotal                      // status_code="200": untouched
	kindOKCreated                    // its _created: untouched
	kindSrcTotal                     // status_code None or 500: a merge source
	kindSrcCreated                   // its _created: a merge source (min)
	kindHist                         // a native histogram a user rule rewrites onto another: forwarded unrepaired
)

func (k seriesKind) untouched() bool { return k <= kindOKCreated || k == kindHist }

// simSeries is one series the sender knows.
type simSeries struct {
	id    string
	kind  seriesKind
	set   *llmSet // nil for up
	which int
	lbls  labels.Labels
	pb    []prompb.Label
	shard int
	wal   []simSample // every sample the scrapes appended, in order
}

type simSample struct {
	s  *simSeries
	t  int64
	v  float64
	st int64
	h  *histogram.Histogram // a native histogram sample (v unused)
	ex bool                 // carries an exemplar
}

func (s simSample) stale() bool { return value.IsStaleNaN(s.v) }

var staleNaN = math.Float64frombits(value.StaleNaN)

type simShard struct {
	idx      int
	queue    []simSample
	busy     bool
	batch    []simSample
	body     []byte
	backoff  int64
	timerGen int
	// applied: an attempt of the batch was written upstream but its answer
	// lost, so a retry's older samples are out of order now.
	applied bool
}

// simDrop is a batch the sender dropped on a 4xx.
type simDrop struct {
	at      int64
	code    int
	msg     string
	batch   []simSample
	applied bool // an earlier attempt was written, its answer lost
}

// simTarget is where the sender sends: rwfix (simFleet), or a test's stub.
type simTarget interface {
	call(body []byte, batch []simSample) simAnswer
}

type simSender struct {
	w      *simWorld
	target simTarget
	rng    *rand.Rand
	series map[string]*simSeries
	order  []*simSeries // in order of first sight: deterministic iteration
	prev   map[*simSeries]bool
	wal    []simSample // appended, not yet read into a shard
	shards []*simShard
	drops  []simDrop
	sent   int // requests sent, retries included
}

func newSimSender(w *simWorld) *simSender {
	s := &simSender{w: w, rng: w.rngSender, series: map[string]*simSeries{}, prev: map[*simSeries]bool{}}
	for i := range w.p.shards {
		s.shards = append(s.shards, &simShard{idx: i})
	}
	return s
}

// start arms every shard's deadline timer.
func (s *simSender) start() {
	for _, sh := range s.shards {
		s.armTimer(sh)
	}
}

// seriesOf returns the series of a scrape point, created on first sight.
func (s *simSender) seriesOf(kind seriesKind, set *llmSet, which int) *simSeries {
	id := "up"
	switch {
	case kind == kindHist:
		id = "hist/" + strconv.Itoa(which)
	case set != nil:
		id = strconv.Itoa(int(kind)) + "/" + strconv.Itoa(set.id) + "/" + strconv.Itoa(which)
	}
	if ss := s.series[id]; ss != nil {
		return ss
	}
	ss := &simSeries{id: id, kind: kind, set: set, which: which, lbls: simLabels(kind, set, which)}
	ss.lbls.Range(func(l labels.Label) { ss.pb = append(ss.pb, prompb.Label{Name: l.Name, Value: l.Value}) })
	ss.shard = int(ss.lbls.Hash() % uint64(len(s.shards)))
	s.series[id] = ss
	s.order = append(s.order, ss)
	return ss
}

// simLabels are a series' labels as the TSDB stores them (job and instance
// added by the scrape).
func simLabels(kind seriesKind, set *llmSet, which int) labels.Labels {
	b := labels.NewScratchBuilder(12)
	b.Add("job", "litellm")
	b.Add("instance", "litellm:4000")
	if kind == kindHist {
		b.Add(model.MetricNameLabel, "litellm_request_total_latency_metric")
		b.Add("api_provider", "openai")
		b.Add("requested_model", simHistModels[which])
		b.Sort()
		return b.Labels()
	}
	if set == nil {
		b.Add(model.MetricNameLabel, "up")
		b.Sort()
		return b.Labels()
	}
	name := "litellm_proxy_total_requests_metric_total"
	if kind == kindOKCreated || kind == kindSrcCreated {
		name = "litellm_proxy_total_requests_metric_created"
	}
	b.Add(model.MetricNameLabel, name)
	for i := 0; i < len(set.pairs); i += 2 {
		b.Add(set.pairs[i], set.pairs[i+1])
	}
	status := "200"
	if which < 2 {
		status = srcStatus[which]
	}
	b.Add("status_code", status)
	b.Sort()
	return b.Labels()
}

// simHistModels name the two latency histograms: a user rule rewrites the
// second's model onto the first's.
var simHistModels = [2]string{"gpt-4o", "gpt-4o-2024-08-06"}

// simHistRule is that rule, in the configuration's relabel_configs.
const simHistRule = `relabel_configs:
  - source_labels: [__name__, requested_model]
    regex: litellm_request_total_latency_metric;gpt-4o-2024-08-06
    target_label: requested_model
    replacement: gpt-4o
`

// outputLabels are the labels of a label set's merged output: its 500
// series' (total or _created).
func outputLabels(kind seriesKind, set *llmSet) labels.Labels {
	return simLabels(kind, set, src500)
}

func (s *simSender) append(smp simSample) {
	ss := smp.s
	ss.wal = append(ss.wal, smp)
	s.wal = append(s.wal, smp)
}

// scrape appends one scrape of LiteLLM at t to the WAL.
func (s *simSender) scrape(t int64) {
	ok, pts := s.w.llm.scrape(t)
	cur := make(map[*simSeries]bool, len(pts))
	for _, p := range pts {
		ss := s.seriesOf(p.kind, p.set, p.which)
		// Exemplars on the counters (OpenMetrics scrapes, send_exemplars).
		ex := s.w.sc.exemplars && (p.kind == kindSrcTotal || p.kind == kindOKTotal) && s.rng.IntN(3) == 0
		s.append(simSample{s: ss, t: t, v: p.v, st: p.st, h: p.h, ex: ex})
		cur[ss] = true
	}
	up := 0.0
	if ok {
		up = 1
	}
	s.append(simSample{s: s.seriesOf(kindUp, nil, 0), t: t, v: up})
	for _, ss := range s.order {
		if s.prev[ss] && !cur[ss] {
			smp := simSample{s: ss, t: t, v: staleNaN}
			if ss.kind == kindHist {
				// The head appends a histogram series' stale marker as a
				// histogram whose sum is the stale NaN, and so the WAL
				// carries it.
				smp.h = &histogram.Histogram{Sum: staleNaN}
			}
			s.append(smp)
		}
	}
	s.prev = cur
	s.pump()
}

// pump reads the WAL into the shards until one is full, and starts the
// shards that hold a full batch.
func (s *simSender) pump() {
	n := 0
	for n < len(s.wal) {
		sh := s.shards[s.wal[n].s.shard]
		if len(sh.queue) >= s.w.p.capacity {
			break
		}
		sh.queue = append(sh.queue, s.wal[n])
		n++
	}
	s.wal = s.wal[n:]
	for _, sh := range s.shards {
		if !sh.busy && len(sh.queue) >= s.w.p.maxPerSend {
			s.send(sh, s.w.p.maxPerSend)
		}
	}
}

func (s *simSender) armTimer(sh *simShard) {
	sh.timerGen++
	gen := sh.timerGen
	s.w.after(simDeadline, func() {
		if sh.timerGen != gen || sh.busy {
			return
		}
		if len(sh.queue) > 0 {
			s.send(sh, min(len(sh.queue), s.w.p.maxPerSend))
			return
		}
		s.armTimer(sh)
	})
}

// send takes n samples off the shard's queue as one batch and sends it.
func (s *simSender) send(sh *simShard, n int) {
	sh.batch = append([]simSample(nil), sh.queue[:n]...)
	sh.queue = sh.queue[n:]
	sh.busy, sh.applied = true, false
	sh.backoff = simMinBackoff
	sh.body = s.encode(sh.batch)
	s.pump()
	s.attempt(sh)
}

// attempt sends the shard's batch once; the answer comes after the round
// trip.
func (s *simSender) attempt(sh *simShard) {
	s.sent++
	ans := s.target.call(sh.body, sh.batch)
	rtt := 1 + s.rng.Int64N(s.w.p.latencyMax)
	s.w.after(rtt, func() { s.answered(sh, ans) })
}

func (s *simSender) answered(sh *simShard, ans simAnswer) {
	sh.applied = sh.applied || ans.applied
	switch {
	case ans.code/100 == 2:
	case ans.code == 0 || ans.code/100 == 5 || ans.code == 429:
		d := sh.backoff
		if ans.retryAfter > 0 {
			d = ans.retryAfter
		}
		sh.backoff = min(2*sh.backoff, simMaxBackoff)
		s.w.after(d, func() { s.attempt(sh) })
		return
	default:
		s.drops = append(s.drops, simDrop{at: s.w.now(), code: ans.code, msg: ans.msg, batch: sh.batch, applied: sh.applied})
		s.w.note(-1, "sender dropped a batch of %d samples: HTTP %d: %.200s", len(sh.batch), ans.code, ans.msg)
		s.w.fault("dropped")
	}
	sh.busy, sh.batch, sh.body = false, nil, nil
	if len(sh.queue) >= s.w.p.maxPerSend {
		s.send(sh, s.w.p.maxPerSend)
		return
	}
	s.armTimer(sh)
	s.pump()
}

// encode renders a batch as Prometheus does: one TimeSeries per sample.
func (s *simSender) encode(batch []simSample) []byte {
	var raw []byte
	var err error
	if s.w.p.proto == remoteapi.WriteV2MessageType {
		st := writev2.NewSymbolTable()
		req := &writev2.Request{Timeseries: make([]writev2.TimeSeries, len(batch))}
		for i, smp := range batch {
			ts := &req.Timeseries[i]
			ts.LabelsRefs = st.SymbolizeLabels(smp.s.lbls, nil)
			ts.Metadata.Type = writev2.Metadata_METRIC_TYPE_GAUGE
			switch {
			case smp.h != nil:
				ts.Histograms = []writev2.Histogram{writev2.FromIntHistogram(0, smp.t, smp.h)}
				ts.Metadata.Type = writev2.Metadata_METRIC_TYPE_HISTOGRAM
			default:
				ts.Samples = []writev2.Sample{{Value: smp.v, Timestamp: smp.t, StartTimestamp: smp.st}}
			}
			if smp.s.kind == kindOKTotal || smp.s.kind == kindSrcTotal {
				ts.Metadata.Type = writev2.Metadata_METRIC_TYPE_COUNTER
			}
			if smp.ex {
				ts.Exemplars = []writev2.Exemplar{{LabelsRefs: st.SymbolizeLabels(simExemplarLabels(smp), nil), Value: 0.25, Timestamp: smp.t - 1_000}}
			}
		}
		req.Symbols = st.Symbols()
		raw, err = req.Marshal()
	} else {
		req := &prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, len(batch))}
		for i, smp := range batch {
			ts := prompb.TimeSeries{Labels: smp.s.pb}
			if smp.h != nil {
				ts.Histograms = []prompb.Histogram{prompb.FromIntHistogram(smp.t, smp.h)}
			} else {
				ts.Samples = []prompb.Sample{{Value: smp.v, Timestamp: smp.t}}
			}
			if smp.ex {
				var exl []prompb.Label
				simExemplarLabels(smp).Range(func(l labels.Label) { exl = append(exl, prompb.Label{Name: l.Name, Value: l.Value}) })
				ts.Exemplars = []prompb.Exemplar{{Labels: exl, Value: 0.25, Timestamp: smp.t - 1_000}}
			}
			req.Timeseries[i] = ts
		}
		raw, err = req.Marshal()
	}
	if err != nil {
		s.w.internal = append(s.w.internal, "encoding a batch: "+err.Error())
	}
	return snappy.Encode(nil, raw)
}

func simExemplarLabels(smp simSample) labels.Labels {
	return labels.FromStrings("trace_id", strconv.FormatUint(uint64(smp.t)*0x9e3779b97f4a7c15^uint64(len(smp.s.id)), 16))
}

// pending is how many samples of timestamp at most t the sender has not
// delivered (WAL, queues, batches in flight).
func (s *simSender) pending(t int64) int {
	n := 0
	count := func(q []simSample) {
		for _, smp := range q {
			if smp.t <= t {
				n++
			}
		}
	}
	count(s.wal)
	for _, sh := range s.shards {
		count(sh.queue)
		count(sh.batch)
	}
	return n
}

// headers are the request headers Prometheus sends (X-Scope-OrgID is set by
// its remote_write headers: the tenant that forward_headers passes on).
func simHeaders(proto remoteapi.WriteMessageType) map[string]string {
	h := map[string]string{
		"Content-Encoding": "snappy",
		"User-Agent":       "Prometheus/3.5.0",
		"X-Scope-OrgID":    "tenant-a",
	}
	if proto == remoteapi.WriteV2MessageType {
		h["Content-Type"] = "application/x-protobuf;proto=io.prometheus.write.v2.Request"
		h["X-Prometheus-Remote-Write-Version"] = "2.0.0"
	} else {
		h["Content-Type"] = "application/x-protobuf"
		h["X-Prometheus-Remote-Write-Version"] = "0.1.0"
	}
	return h
}
