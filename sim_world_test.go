package main

// The fault simulation's world: one simulated clock, one queue of events in
// time order, and the models that the events drive (sim_litellm_test.go,
// sim_sender_test.go, sim_tsdb_test.go) around the real rwfix
// (sim_rwfix_test.go). Everything that varies is drawn from the seed, each
// model from a random stream of its own, so that switching a fault class on
// does not change the traffic the others see.

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
)

// simBase is the simulated clock's origin (ms since the epoch): a fixed
// instant, so that a seed replays the same timestamps.
const simBase int64 = 1_750_000_000_000

// Prometheus' defaults that the model sender keeps.
const (
	simInterval     int64 = 15_000 // scrape_interval
	simDeadline     int64 = 5_000  // batch_send_deadline
	simMinBackoff   int64 = 30     // min_backoff
	simMaxBackoff   int64 = 5_000  // max_backoff
	simSyncInterval int64 = 10_000 // the merge log's fsync period
)

// simParams are what a seed draws for one run.
type simParams struct {
	proto      remoteapi.WriteMessageType
	shards     int
	maxPerSend int
	capacity   int // samples a shard holds before the WAL reader waits
	sets       int // LiteLLM label sets (keys)
	runFor     int64
	drainFor   int64
	latencyMax int64 // ms: the longest round trip of a request
	startTS    bool  // RW 2.0: samples carry start timestamps
}

// simEvent is something that happens at a simulated instant; seq keeps
// events of one instant in the order they were scheduled.
type simEvent struct {
	at  int64
	seq uint64
	fn  func()
}

type simEvents []*simEvent

func (q simEvents) Len() int { return len(q) }
func (q simEvents) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q simEvents) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *simEvents) Push(x any)   { *q = append(*q, x.(*simEvent)) }
func (q *simEvents) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// simNote is a world event worth showing in a failure's trace.
type simNote struct {
	at  int64
	set int // the LiteLLM label set it concerns; -1: every one
	msg string
}

// simFault is a fault the scenario injected, for the checker's causes.
type simFault struct {
	at   int64
	kind string // crash, power-loss, state-loss, outage, reload
}

// simWorld is one run of the simulation.
type simWorld struct {
	seed int64
	sc   *simScenario
	p    simParams
	dir  string // the run's temporary directory

	clock  atomic.Int64 // ms; read by rwfix's merge through mergeNow
	events simEvents
	seq    uint64

	// Random streams, one per model.
	rngParams, rngLLM, rngSender, rngFaults *rand.Rand

	llm *simLiteLLM
	snd *simSender
	db  *simTSDB
	fix *simFleet

	runEnd, drainEnd int64
	notes            []simNote
	faults           []simFault
	// failures of the simulation itself (not of rwfix): a model that could
	// not run. They fail the seed with their own check name.
	internal []string
}

func simRand(seed int64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), stream))
}

func newSimWorld(seed int64, sc *simScenario, dir string) *simWorld {
	w := &simWorld{seed: seed, sc: sc, dir: dir,
		rngParams: simRand(seed, 1), rngLLM: simRand(seed, 2), rngSender: simRand(seed, 3), rngFaults: simRand(seed, 4)}
	r := w.rngParams
	w.p = simParams{
		proto:      remoteapi.WriteV1MessageType,
		shards:     2 + r.IntN(5),
		maxPerSend: []int{50, 100, 200, 500}[r.IntN(4)],
		sets:       sc.sets(r),
		runFor:     sc.runFor(r),
		drainFor:   5 * 60_000,
		latencyMax: 5 + r.Int64N(60),
	}
	w.p.capacity = w.p.maxPerSend * (2 + r.IntN(4))
	switch sc.protocols {
	case simRW2:
		w.p.proto = remoteapi.WriteV2MessageType
	case simBothProtos:
		if r.IntN(2) == 1 {
			w.p.proto = remoteapi.WriteV2MessageType
		}
	}
	w.p.startTS = w.p.proto == remoteapi.WriteV2MessageType && sc.startTimestamps && r.IntN(2) == 1
	w.clock.Store(simBase)
	w.runEnd = simBase + w.p.runFor
	w.drainEnd = w.runEnd + w.p.drainFor
	return w
}

func (w *simWorld) now() int64 { return w.clock.Load() }

// mergeNow is rwfix's merge clock: the simulated one.
func (w *simWorld) mergeNow() time.Time { return time.UnixMilli(w.clock.Load()) }

// at schedules fn at simulated time t (never in the past).
func (w *simWorld) at(t int64, fn func()) {
	w.seq++
	heap.Push(&w.events, &simEvent{at: max(t, w.now()), seq: w.seq, fn: fn})
}

func (w *simWorld) after(d int64, fn func()) { w.at(w.now()+d, fn) }

// running reports whether the run phase is on: faults and LiteLLM's traffic
// happen only then; the drain after it lets held samples go out.
func (w *simWorld) running() bool { return w.now() < w.runEnd }

func (w *simWorld) note(set int, format string, args ...any) {
	w.notes = append(w.notes, simNote{at: w.now(), set: set, msg: fmt.Sprintf(format, args...)})
}

func (w *simWorld) fault(kind string) { w.faults = append(w.faults, simFault{w.now(), kind}) }

// run executes the events in time order until the drain ends.
func (w *simWorld) run() {
	for w.events.Len() > 0 {
		e := heap.Pop(&w.events).(*simEvent)
		if e.at > w.drainEnd {
			break
		}
		w.clock.Store(e.at)
		e.fn()
	}
	w.clock.Store(w.drainEnd)
}

// rel is a simulated instant as seconds since the run's start, for traces.
func rel(t int64) string { return fmt.Sprintf("%.3fs", float64(t-simBase)/1000) }

// setup builds the models and schedules the run: scrapes, LiteLLM's
// restarts, and the faults the scenario switches on.
func (w *simWorld) setup() error {
	w.db = newSimTSDB(w)
	w.llm = newSimLiteLLM(w)
	w.snd = newSimSender(w)
	fleet, err := newSimFleet(w)
	if err != nil {
		return err
	}
	w.fix = fleet
	w.snd.target = fleet

	// Scrapes: one every interval, at a fixed offset, until the drain ends.
	first := simBase + w.rngParams.Int64N(simInterval)
	var scrape func()
	scrape = func() {
		w.snd.scrape(w.now())
		if w.now()+simInterval <= w.drainEnd {
			w.after(simInterval, scrape)
		}
	}
	w.at(first, scrape)
	w.snd.start()
	w.at(w.runEnd, w.llm.freeze)
	w.llm.schedule()
	w.db.schedule()
	w.fix.schedule()
	return nil
}

// between draws an instant in [from, to) of the run phase.
func between(r *rand.Rand, from, to int64) int64 {
	if to <= from {
		return from
	}
	return from + r.Int64N(to-from)
}
