package relabel

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/rwfix/rwfix/remotewrite/series"
)

// mergeShards is how many shards the merge state has. Outputs are spread
// over them by the hash of their labels, each shard with its own lock, so
// requests merge in parallel: no lock is global on the hot path. Every
// output lives in one shard, and a shard is the whole state machine of
// shard.go for its outputs; what the shards share is the log (one file, its
// own lock, taken after a shard's), the ids, the output count (max_series
// holds for the whole state) and the metrics.
const mergeShards = 16

// Merger is the exact counter merge behind the "merge" collision policy; the
// state machine is described on shard (shard.go). Create one per process and
// pass it to every Pipeline, so that state survives configuration reloads. It
// is not durable until OpenLog.
type Merger struct {
	shards  [mergeShards]*shard
	nextID  atomic.Uint64
	total   outputCount // outputs, every shard
	log     *mergeLog   // nil: not durable
	metrics *mergeMetrics
	mem     stateMemory // the heap held, as last measured (see heapBytes)
	// horizon (ms) is the first timestamp from which the state has seen
	// every sample the sender sent: a source first seen at T counted 0
	// before T only at timestamps from the horizon on; before it, its count
	// is unknown (its earlier samples may have gone to a process whose state
	// is lost). It is the start of the state (plus clockSkew), kept in the
	// log across restarts; MinInt64 for a state with no earlier process
	// (SetClock: tests and offline runs). Written with every shard locked.
	horizon int64
	// backlogBefore is the horizon of a state started without a log (a
	// first start, a lost data directory, no storage path, a corrupt log or
	// a power loss): raw samples of merge outputs stamped before it go as
	// retries (see Pipeline.splitBacklog). It is kept in the log, and a
	// restart that replays it goes on splitting: a sender's request answered
	// 503 once some of those samples were stored on their own comes back
	// after the restart. MinInt64 for a log written before it was kept.
	// Read without a lock.
	backlogBefore atomic.Int64
	// preimage is the number of label sets that the running rules can map
	// onto an output (0: unknown, as with user rules): once that many
	// sources are known, no other can appear, and a complete timestamp is
	// finalized without the birth wait. Set with every shard locked.
	preimage func(out labels.Labels) int
	// preGen numbers the preimage functions set (from 1), so that an output
	// caches its preimage size until the next one. Set with every shard
	// locked.
	preGen uint32
	// droppedExemplars counts the exemplars of sources whose output sent no
	// sample in their request (see mergeGroups).
	droppedExemplars prometheus.Counter

	// uncleanEnd: the log OpenLog replayed ended torn or zero-filled, so
	// the state may lack its last changes (see UncleanEnd).
	uncleanEnd bool
	// What OpenLog read of the log's end (see its power-loss check): a
	// zero-filled tail, the boot that wrote it, whether it was closed; and
	// its verdict.
	zeroTail, closed, powerLoss bool
	lastBoot                    string
	boot                        string // this process' boot (see bootID)
	// seen holds, by partition, the stamp of its last transaction (a
	// *atomic.Int64): a partition with outputs pending and no transaction
	// for longer than the wait has lost its sender (see idle.go).
	seen sync.Map

	// fences keep the raw samples of retired outputs' label sets out of
	// the requests for a while (see retire.go); fenced is whether any is.
	fenceMu    sync.Mutex
	fences     map[uint64]fence
	fenceSweep stamp
	fenced     atomic.Bool

	// retrying holds, by partition, when a request of it was last answered
	// so that the sender retries it (a *atomic.Int64 stamp; see Retrying).
	retrying sync.Map
	// retryFloor (when retryFloorSet) is the latest retry of any partition
	// when a reload last changed the partitions: every partition counts as
	// retrying since then (see settled).
	retryFloor    atomic.Int64
	retryFloorSet atomic.Bool

	// created: the sources' creation times, from their _created series
	// (see created.go).
	created createdTimes

	// coverage names what the running rules merge (see setCoverage).
	coverage string
	// partitions names how requests are partitioned (the upstreams'
	// forward_headers), kept in the log; "" with known false: not told yet
	// (see Partitions).
	partitions      string
	partitionsKnown bool

	// gen numbers the configurations that changed what the state merges or
	// how it partitions (a reload's coverage, its partition scheme): a
	// Pipeline activated under an older one is stale (see Pipeline.gen).
	// Changed with every shard locked.
	gen atomic.Uint64

	// origins holds, by partition, how its requests come (KeepOrigin),
	// kept in the log: a flush after a restart sends with it (see
	// idle.go). Guarded by originMu, taken after the log's lock.
	originMu sync.Mutex
	origins  map[string]series.Origin
}

// Partitions tells the state how requests are partitioned now (scheme: the
// upstreams' forward_headers) and reports whether that changed since the
// state last ran: by a reload, or while rwfix was down (the scheme is kept
// in the log). If it did, no output in the state will see its partition
// again: they are orphaned (logged before the scheme), and the answer goes
// to Pipeline.Activate, which retires those the new rules no longer merge.
// Call it once the configuration can no longer be refused.
func (w *Merger) Partitions(scheme string) (changed bool) {
	w.lockAll()
	told := !w.partitionsKnown || w.partitions != scheme
	changed = w.partitionsKnown && w.partitions != scheme
	w.partitions, w.partitionsKnown = scheme, true
	if changed {
		// Orphaned before the scheme is logged: a log cut between the two
		// (a SIGKILL between two writes, a power loss) must never hold the
		// new scheme with outputs of the old partitions not orphaned — they
		// would pass for the new scheme's, and the new partition would make
		// a second output of their label sets beside them. Cut before the
		// scheme, the restart finds the old one and orphans the rest.
		for _, sh := range w.shards {
			for o := range sh.all() {
				switch {
				case o.is(outRetire):
					// Retired before (its queue not sent yet): its
					// partition is of the old scheme now, whose
					// sender's raw samples come under a new one
					// (see queuedElsewhere; sim all seed 12010488).
					sh.setOldPart(o)
				case !o.is(outOrphan):
					sh.orphan(o)
				}
			}
		}
	}
	if told && w.log != nil {
		// In the log at once: a restart must know the scheme its outputs'
		// partitions follow.
		l := w.log
		l.mu.Lock()
		l.buf = append(l.buf, metaState(l, w, false)...)
		l.mu.Unlock()
	}
	w.unlockAll()
	w.flushLog()
	return changed
}

// Retrying records that a request of partition part was answered so that
// its sender retries it (a 5xx or 429: the upstream failed, or rwfix was
// overloaded). The shard that sent it is blocked, retrying, while the
// others may flow (their requests carry no series to forward, or go
// through): a source on it — born, or known — arrives late. So while a
// partition's sender retries, and for birth_wait plus its longest backoff
// after (see senderSettled), no timestamp of its outputs is finalized by
// the clock: neither by the birth wait nor as overdue. A source that keeps
// failing is bounded by maxHeld.
func (w *Merger) Retrying(part string) {
	now := int64(stampOf(w.shards[0].now()))
	v, _ := w.retrying.LoadOrStore(part, new(atomic.Int64))
	v.(*atomic.Int64).Store(now)
}

// partitionsChanged carries the senders' retries across a reload that
// changed the partitions (forward_headers): a sender that was retrying
// under its old partition goes on retrying under a new one, which has no
// retry of its own yet — seen settled, its outputs would be finalized
// while the sender's stuck shard still holds their samples (sim all seed
// 4000262). Which old partition is which new one is not known, so every
// partition counts as retrying as recently as the latest retry of any.
func (w *Merger) partitionsChanged() {
	latest, found := int64(0), false
	w.retrying.Range(func(_, v any) bool {
		if s := v.(*atomic.Int64).Load(); !found || s > latest {
			latest, found = s, true
		}
		return true
	})
	if found && (!w.retryFloorSet.Load() || latest > w.retryFloor.Load()) {
		w.retryFloor.Store(latest)
		w.retryFloorSet.Store(true)
	}
}

// senderBackoff is the longest a sender waits before it retries (Prometheus'
// max_backoff is 5 s by default).
const senderBackoff = 5 * time.Second

// settled reports whether partition part's sender has not been retrying for
// longer than wait plus its longest backoff.
func (w *Merger) settled(part string, now stamp, wait time.Duration) bool {
	if w.retryFloorSet.Load() && since(now, stamp(w.retryFloor.Load())) < wait+senderBackoff {
		return false
	}
	v, ok := w.retrying.Load(part)
	if !ok {
		return true
	}
	return since(now, stamp(v.(*atomic.Int64).Load())) >= wait+senderBackoff
}

// settledAll reports whether no partition's sender has been retrying for
// longer than wait plus its longest backoff: the test for an orphan, whose
// sender now sends under a partition of the new scheme that is not known
// until one adopts it. Its old partition sees no request again, so its own
// retries end with the reload's carried floor (partitionsChanged) while the
// sender's stuck shard may go on retrying under the new one for as long as
// the upstream fails (sim all seed 12010574: a None born during an outage,
// its shard stuck across a reload that turned forward_headers on, was left
// out of its orphaned 500's samples, finalized by the clock 36 s after the
// reload).
func (w *Merger) settledAll(now stamp, wait time.Duration) bool {
	ok := w.settled("", now, wait) // the carried floor, and the "" partition
	w.retrying.Range(func(_, v any) bool {
		ok = ok && since(now, stamp(v.(*atomic.Int64).Load())) >= wait+senderBackoff
		return ok
	})
	return ok
}

// clockSkew is how far the sender's clock (sample timestamps) is taken to
// run ahead of rwfix's at most. A sample is stamped at its scrape, before it
// is sent: one stamped after a start without state cannot have reached the
// process before, whose state was lost — when the clocks agree (NTP), as
// Prometheus assumes of its targets.
const clockSkew = 0

// NewMerger creates the merge state and registers its metrics with reg.
func NewMerger(cfg CollisionConfig, reg prometheus.Registerer) *Merger {
	cfg.setDefaults()
	w := &Merger{horizon: time.Now().Add(clockSkew).UnixMilli(), boot: bootID()}
	w.backlogBefore.Store(w.horizon)
	f := promauto.With(reg)
	w.metrics = &mergeMetrics{
		collisions: f.NewCounter(prometheus.CounterOpts{Namespace: "rwfix", Name: "collisions_total",
			Help: "Times a second (or further) source series was seen for one output label set, and merged."}),
		merged: f.NewCounter(prometheus.CounterOpts{Namespace: "rwfix", Name: "merged_samples_total",
			Help: "Source samples taken into the merge."}),
		emitted: f.NewCounter(prometheus.CounterOpts{Namespace: "rwfix", Name: "merge_emitted_samples_total",
			Help: "Output samples the merge finalized (each sent once accepted upstream)."}),
		full: f.NewCounter(prometheus.CounterOpts{Namespace: "rwfix", Name: "merge_state_full_total",
			Help: "Outputs not merged because the state held max_series outputs; their rewrites were undone."}),
		overdue: f.NewCounter(prometheus.CounterOpts{Namespace: "rwfix", Name: "merge_overdue_total",
			Help: "Output samples finalized without waiting any longer for a source that had not reported (taken at its latest value)."}),
		unknown: f.NewCounter(prometheus.CounterOpts{Namespace: "rwfix", Name: "merge_unknown_samples_total",
			Help: "Output timestamps not sent because a source's value at that time was unknown (before its first sample, while a new output learned its sources)."}),
		late: f.NewCounter(prometheus.CounterOpts{Namespace: "rwfix", Name: "merge_late_samples_total",
			Help: "Source samples that arrived after their output had finalized their timestamp; they count from the next output sample on."}),
		logErrors: f.NewCounter(prometheus.CounterOpts{Namespace: "rwfix", Name: "merge_log_errors_total",
			Help: "Failed writes of the merge state log (the state in memory stays exact; a crash would then lose it)."}),
		fenced: f.NewCounter(prometheus.CounterOpts{Namespace: "rwfix", Name: "merge_fenced_samples_total",
			Help: "Samples of a series not sent because, after a reload took its label set away from the merge, the merge had sent (or will send) its own sample at or after their timestamp."}),
		ambiguous: f.NewCounter(prometheus.CounterOpts{Namespace: "rwfix", Name: "merge_ambiguous_restarts_total",
			Help: "Merged outputs restarted while a source that counted stayed away: an exporter restart, or that source removed while another was created again (then its count is lost from the sum); the scrapes cannot tell them apart."}),
		unknownCounts: f.NewCounter(prometheus.CounterOpts{Namespace: "rwfix", Name: "merge_unknown_counts_total",
			Help: "Merge sources whose count before is not in the output's sum: first seen as a stale marker (the series had counted before this state saw it: the merge was off when its last sample came, or a start without state), or created again, as their creation time says, at a time the state had counted already (its _created samples of that time lost)."}),
		hold: f.NewHistogram(prometheus.HistogramOpts{Namespace: "rwfix", Name: "merge_hold_seconds",
			Help:    "Time from the arrival of the first source sample at a merged output's timestamp to its finalization: the latency the merge adds (births wait collision.birth_wait).",
			Buckets: []float64{0.01, 0.1, 0.5, 1, 2, 5, 10, 15, 30, 60, 120}}),
	}
	w.droppedExemplars = f.NewCounter(prometheus.CounterOpts{Namespace: "rwfix", Name: "merge_dropped_exemplars_total",
		Help: "Exemplars of merge sources dropped because their output sent no sample in the same request (held, or re-sent apart); a series with exemplars and no sample is refused by Prometheus 3."})
	for i := range w.shards {
		w.shards[i] = newShard(w, cfg)
	}
	f.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "rwfix", Name: "merge_state_series",
		Help: "Output series in the merge state."}, func() float64 {
		return float64(w.total.Load())
	})
	f.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "rwfix", Name: "merge_state_sources",
		Help: "Source series in the merge state."}, func() float64 {
		n := 0
		for _, sh := range w.shards {
			sh.mu.Lock()
			n += sh.nsrc
			sh.mu.Unlock()
		}
		return float64(n)
	})
	f.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "rwfix", Name: "merge_pending_series",
		Help: "Outputs with samples held (waiting for a source) or waiting for a request to ride on."}, func() float64 {
		n := int64(0)
		for _, sh := range w.shards {
			n += sh.pending.Load()
		}
		return float64(n)
	})
	return w
}

// shardOf is the shard that holds the outputs with label hash h.
func (w *Merger) shardOf(h uint64) *shard { return w.shards[h%mergeShards] }

// home is the shard that holds o (a hash of its labels: the record does not
// keep a pointer for what only the log's replay and reloads ask).
func (w *Merger) home(o *output) *shard { return w.shardOf(o.labels.Hash()) }

// lockAll locks every shard, in order (the log's lock comes after).
func (w *Merger) lockAll() {
	for _, sh := range w.shards {
		sh.mu.Lock()
	}
}

func (w *Merger) unlockAll() {
	for _, sh := range w.shards {
		sh.mu.Unlock()
	}
}

// SetClock replaces the wall clock, for tests and offline runs that follow
// the samples' time. Such a state has no earlier process: no sample is a
// retry because of its age, and every source was seen from its birth (until
// OpenLog, which starts a durable state's horizon).
func (w *Merger) SetClock(now func() time.Time) {
	w.lockAll()
	defer w.unlockAll()
	w.horizon = math.MinInt64
	w.backlogBefore.Store(math.MinInt64)
	for _, sh := range w.shards {
		sh.now = now
		sh.retryUntil = math.MinInt64
	}
}

// SetProcessClock is SetClock for a state that stands for a running
// process on a clock of its own (the fault simulation, sim_test.go, restarts
// rwfix on the simulated clock): as with the wall clock, output samples up to
// a minute past the start may have been written by an earlier process, so
// they are sent as retries.
func (w *Merger) SetProcessClock(now func() time.Time) {
	w.SetClock(now)
	until := now().Add(time.Minute).UnixMilli()
	w.lockAll()
	defer w.unlockAll()
	w.horizon = now().Add(clockSkew).UnixMilli()
	w.backlogBefore.Store(w.horizon)
	for _, sh := range w.shards {
		sh.retryUntil = until
	}
}

// setConfig applies a reloaded configuration's limits.
func (w *Merger) setConfig(cfg CollisionConfig) {
	cfg.setDefaults()
	w.lockAll()
	defer w.unlockAll()
	for _, sh := range w.shards {
		if sh.cfg.Policy != PolicyMerge && cfg.Policy == PolicyMerge {
			sh.rawBefore()
		}
		sh.cfg = cfg
		sh.gcAt.Store(0) // idle_timeout may have changed: GC at the next request
	}
}

// setCoverage tells the state what the running rules merge (coverage: the
// policy, presets and rules that decide it). When it changes to a merging
// one — the merge back after keep_distinct, the preset on again, rules
// changed — label sets that the merge now owns may have gone out raw
// meanwhile (the genuine 500 while the preset was off): see rawBefore.
func (w *Merger) setCoverage(coverage string, merges bool) {
	w.lockAll()
	defer w.unlockAll()
	if merges && w.coverage != "" && coverage != w.coverage {
		for _, sh := range w.shards {
			sh.rawBefore()
		}
	}
	if coverage != w.coverage {
		w.gen.Add(1)
	}
	w.coverage = coverage
}

// rawBefore says that series of the outputs' label sets may have gone out
// raw until now, so the upstream may have samples newer than those the
// outputs hold or will finalize for earlier timestamps: as after a restart,
// what is finalized up to a minute from now goes as retries, whose 4xx
// never fails a sender's batch. Called with the shard locked.
func (m *shard) rawBefore() {
	m.retryUntil = max(m.retryUntil, m.now().Add(time.Minute).UnixMilli())
}

// setPreimage sets the running rules' preimage size (see Merger.preimage).
func (w *Merger) setPreimage(f func(out labels.Labels) int) {
	w.lockAll()
	defer w.unlockAll()
	w.preimage = f
	w.preGen++
	if w.preGen == 0 {
		w.preGen = 1 // 0 is an output's "not cached yet"
	}
}

// maxWait is collision.max_wait.
func (w *Merger) maxWait() time.Duration {
	sh := w.shards[0]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return time.Duration(sh.cfg.MaxWait)
}

// known reports whether out is an output in the state (any partition).
func (w *Merger) known(out labels.Labels) bool {
	h := out.Hash()
	return w.shardOf(h).known(out, h)
}

// reserve takes a place for a new output if the state holds fewer than
// maxSeries (every shard together); newOutput then counts the output.
func (w *Merger) reserve(maxSeries int) bool {
	for {
		n := w.total.Load()
		if n >= int64(maxSeries) {
			return false
		}
		if w.total.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// outputs is the number of outputs in the state.
func (w *Merger) outputs() int { return int(w.total.Load()) }

// Pending reports, without locking, whether some output waits for a request
// to ride on (or for the clock): then every request should Begin and
// Collect, even one that carries no source.
func (w *Merger) Pending() bool {
	for _, sh := range w.shards {
		if sh.Pending() {
			return true
		}
	}
	return false
}

// Begin starts one request's transaction. part is the request's partition
// (tenant): outputs of different partitions never meet.
func (w *Merger) Begin(part string) MergeTx { return w.begin(part, 0) }

// begin is Begin for a pipeline activated at generation gen (0: any; see
// Merger.gen).
func (w *Merger) begin(part string, gen uint64) *shardedTx {
	w.sawPartition(part)
	return &shardedTx{w: w, part: part, gen: gen}
}

// shardedTx is one request's transaction over the shards it touches: one
// mergeTx per shard, begun on the first Add that lands there (or at Collect,
// for a shard with outputs waiting for a request).
type shardedTx struct {
	w     *Merger
	part  string
	gen   uint64 // the pipeline's (see Merger.gen); 0: any
	subs  [mergeShards]mergeTx
	began [mergeShards]bool
	// route is the shard of each Add call, in order: shard sh's k-th Add is
	// the k-th call here routed to sh.
	route []uint8
	// sources: by Add call, how many sources its output has (see Sources).
	sources []int32
	// perShard is the room each shard's lists start with (see expect); 0:
	// none, they grow as they fill.
	perShard int
	// lists: Collect's emit list and Add numbering, from collectPool,
	// until releaseEmits (nil: none taken).
	lists *collectLists
}

// collectLists are the lists Collect makes for a request: its emits (room
// for every Add call: 56 bytes each, 56 KB for 1,000 outputs) and the Add
// calls numbered by shard. Kept for the next request, they are cleared of
// the request's labels and samples first (see releaseEmits).
type collectLists struct {
	emits []Emit
	adds  []int32
}

var collectPool = sync.Pool{New: func() any { return new(collectLists) }}

// maxPooledEmits is the most emits a list kept for another request may
// have room for: one grown by a far larger request than usual is left to
// the GC.
const maxPooledEmits = 1 << 14

// releaseEmits gives back the lists of Collect once the caller no longer
// reads the emits it returned: only what they refer to (labels, the
// outputs' samples) lives on, in the batch and the retries.
func (tx *shardedTx) releaseEmits() {
	cl := tx.lists
	if cl == nil {
		return
	}
	tx.lists = nil
	if cap(cl.emits) > maxPooledEmits || cap(cl.adds) > maxPooledEmits {
		return
	}
	clear(cl.emits)
	cl.emits, cl.adds = cl.emits[:0], cl.adds[:0]
	collectPool.Put(cl)
}

func (tx *shardedTx) sub(i int) *mergeTx {
	if !tx.began[i] {
		tx.began[i] = true
		tx.subs[i] = mergeTx{m: tx.w.shards[i], part: tx.part, gen: tx.gen}
		if c := tx.perShard; c > 0 {
			sub := &tx.subs[i]
			sl := shardListsPool.Get().(*shardLists)
			sub.lists = sl
			sub.groups, sub.attached, sub.retry = slices.Grow(sl.groups, c), slices.Grow(sl.attached, c), slices.Grow(sl.retry, c)
		}
	}
	return &tx.subs[i]
}

// shardLists are the lists of one shard's part of a request's transaction
// (mergeTx: its Add calls' outputs, the outputs it attaches, their retry
// flags), kept for another request once it is over (see mergeTx.release):
// made anew, the sixteen shards' were about 24 KB a request of 1,000
// outputs.
type shardLists struct {
	groups, attached []*output
	retry            []bool
}

var shardListsPool = sync.Pool{New: func() any { return new(shardLists) }}

// expect sizes the transaction for n Add calls. The calls spread over the
// shards by their outputs' label hashes, n/mergeShards each on average with
// a standard deviation of about its square root: each shard's lists (its
// Add calls, the outputs it attaches, their retry flags) start with room
// for the average and three deviations, one allocation each where growing
// from nothing by doubling took about seven at 1,000 outputs a request.
func (tx *shardedTx) expect(n int) {
	if n <= 0 {
		return
	}
	per := n / mergeShards
	tx.perShard = per + 3*int(math.Sqrt(float64(per))) + 4
	tx.route = slices.Grow(tx.route, n)
	tx.sources = slices.Grow(tx.sources, n)
}

// Add folds one request's float samples for the sources of out into the
// state (see mergeTx.Add).
func (tx *shardedTx) Add(out labels.Labels, sources []labels.Labels, samples [][]Sample) bool {
	return tx.AddHashed(out, out.Hash(), sources, samples)
}

// AddHashed is Add for an output whose labels.Labels.Hash is known: h must
// be out.Hash() (not hashLabels), which picks the shard and the index key
// (see Merger.home).
func (tx *shardedTx) AddHashed(out labels.Labels, h uint64, sources []labels.Labels, samples [][]Sample) bool {
	i := int(h % mergeShards)
	tx.route = append(tx.route, uint8(i))
	sub := tx.sub(i)
	ok := sub.add(out, h, sources, samples)
	tx.sources = append(tx.sources, int32(sub.sources))
	return ok
}

// stale reports whether an Add found the state reconfigured since the
// transaction's pipeline was activated (see Merger.gen): it changed nothing
// then, and the request must not go (the sender sends it again, to the
// pipeline now running).
func (tx *shardedTx) stale() bool {
	for i := range tx.subs {
		if tx.began[i] && tx.subs[i].stale {
			return true
		}
	}
	return false
}

// Sources returns how many sources the output of Add call k has in the
// state, this request's included (0: not merged, the state was full). More
// than one: the sources collide and are summed.
func (tx *shardedTx) Sources(k int) int {
	if k < 0 || k >= len(tx.sources) {
		return 0
	}
	return int(tx.sources[k])
}

// Collect returns what the request carries for the merge (see
// mergeTx.Collect), shard after shard, with Group numbered as this
// transaction's Add calls. Before it returns, the state changes are in the
// log: the request may be answered.
func (tx *shardedTx) Collect() []Emit {
	var emits []Emit
	took := len(tx.route) > 0 && tx.lists == nil
	if took {
		// Room for every Add call's emit: attach appends to it.
		tx.lists = collectPool.Get().(*collectLists)
		emits = slices.Grow(tx.lists.emits[:0], len(tx.route))
	}
	// The Add calls by shard, numbered here: shard sh's g-th is
	// adds[first[sh]+g]. One pass over the calls makes the table, made once
	// the first shard emits (a pass per shard that emits took sixteen).
	var adds []int32
	var first [mergeShards + 1]int32
	// The clock, read once (when a shard needs it): whether a shard's idle
	// GC is due is asked of the same instant for every shard.
	var now stamp
	clock := false
	for i, sh := range tx.w.shards {
		if !tx.began[i] && !sh.Pending() {
			if !clock {
				now, clock = stampOf(sh.now()), true
			}
			if int64(now) < sh.gcAt.Load() {
				continue // nothing for this request there, no GC due
			}
		}
		from := len(emits)
		sub := tx.sub(i)
		sub.room = len(tx.route)
		emits = sub.collect(emits)
		if from == len(emits) {
			continue
		}
		if adds == nil && len(tx.route) > 0 {
			adds = tx.numberAdds(&first)
		}
		for j := from; j < len(emits); j++ {
			if g := emits[j].Group; g >= 0 {
				emits[j].Group = int(adds[first[i]+int32(g)])
			}
		}
	}
	tx.w.flushLog()
	if took {
		tx.lists.emits = emits // for releaseEmits, which clears it
	}
	if len(emits) == 0 {
		return nil // a request that emits nothing has no list, as before one was kept
	}
	return emits
}

// numberAdds lists the transaction's Add calls shard after shard, each
// shard's in order, and sets first[sh] to where shard sh's begin (a counting
// sort of tx.route).
func (tx *shardedTx) numberAdds(first *[mergeShards + 1]int32) []int32 {
	for _, r := range tx.route {
		first[r+1]++
	}
	for sh := range mergeShards {
		first[sh+1] += first[sh]
	}
	next := *first
	var adds []int32
	if tx.lists != nil {
		adds = slices.Grow(tx.lists.adds[:0], len(tx.route))[:len(tx.route)]
		tx.lists.adds = adds
	} else {
		adds = make([]int32, len(tx.route))
	}
	for k, r := range tx.route {
		adds[next[r]] = int32(k)
		next[r]++
	}
	return adds
}

// Done tells every shard the upstreams' answers (see mergeTx.Done). Collect
// returned the retries shard after shard, so taken is cut the same way.
func (tx *shardedTx) Done(ok bool, taken []int) {
	for i := range tx.subs {
		if !tx.began[i] {
			continue
		}
		sub := &tx.subs[i]
		n := min(sub.retries(), len(taken))
		sub.Done(ok, taken[:n])
		taken = taken[n:]
	}
}

// retries is how many outputs the transaction carries as retries.
func (tx *mergeTx) retries() int {
	n := 0
	for _, r := range tx.retry {
		if r {
			n++
		}
	}
	return n
}

// SetBoot names the boot the process runs in (the fault simulation's
// machines boot again after a power loss); by default the machine's.
func (w *Merger) SetBoot(id string) { w.boot = id }

// PowerLoss reports whether the log OpenLog replayed may have lost its last
// unsynced records (see OpenLog); births before the restart are then counted
// as unknown rather than taken as births.
func (w *Merger) PowerLoss() bool { return w.powerLoss }
