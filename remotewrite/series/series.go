package series

import "github.com/prometheus/prometheus/model/labels"

// Sample is one float sample of a merge source or output: timestamp, value
// and RW 2.0 start timestamp (0: none).
type Sample struct {
	T, ST int64
	V     float64
}

// Emit is what a request carries for one merged output: its labels and the
// samples to send, in timestamp order. Group is the index of the Add call of
// the same merge transaction that named this output (the request carries its
// sources: the output takes one source's slot, the genuine series' when only
// the values differ from its own, else the first source's), or -1 when the request
// carries none of its sources (the output is appended to the request).
//
// Retry marks samples that the upstream may have written already: sent before
// (the send failed or its answer was lost) or finalized before this process
// started (restored from the merge log, or re-made from a sender's retry). A
// TSDB refuses a repeat older than its newest sample of the series (out of
// order, 400), so such samples go in a request of their own, never making the
// sender's batch fail; how much of them was taken is told to MergeRun.Done
// sample by sample.
type Emit struct {
	Group   int
	Labels  labels.Labels
	Samples []Sample
	Retry   bool
}

// Getter reads one label value of a series. The wire's getter reads the
// request buffer in place: the returned string is valid only during the call.
// labels.Labels implements it.
type Getter interface {
	Get(name string) string
}

// Batch is one decoded request as the repair sees it. Labels are read in
// place (Getter, Pairs: valid only during the call); changes are recorded by
// the implementation and applied when it re-encodes the request. Package
// remotewrite implements it for both protocols over its in-place index.
type Batch interface {
	Len() int
	// Getter reads one label of series i without allocating.
	Getter(i int) Getter
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
	// SeriesKey is a 128-bit key of series i's label set that the batch can
	// compute cheaply (RW 1.0: a hash of the label fields' bytes; RW 2.0, of
	// the strings its references name), with seeds of its own, or ok false. A key names one label set; one label set may
	// have several keys.
	SeriesKey(i int) (h1, h2 uint64, ok bool)
}

// Result sums up what a Repairer did to a request. Each series counts once in
// Repaired and Dropped, and may count in Merged too: a None series summed
// with a genuine 500 is repaired and merged; the genuine one, merged.
type Result struct {
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
type MergeRun interface {
	Done(ok bool, taken []int)
	Retries() []Emit
	// Sequential reports whether the retries must reach the upstream before
	// the request: it carries, raw, the label set of a retired output whose
	// queue is among them, and a raw sample there before them would make them
	// out of order.
	Sequential() bool
}

// Backlog is implemented by a MergeRun whose last Backlog() retries are the
// sender's own samples taken out of its request (raw samples that an earlier
// process, whose state is lost, may have sent merged with another value):
// the handler settles them before answering, and answers 503 (the sender
// retries) if one of them was not settled.
type Backlog interface {
	Backlog() int
}

// Waiting is implemented by a MergeRun whose request must not be forwarded
// now: it carries, raw, the label set of a retired output whose queue is not
// settled and not among its retries (in flight on another request, or
// queued for another partition). A raw sample there before that queue
// would make it out of order: the handler answers 503, forwarding nothing,
// and the sender sends the request again.
type Waiting interface {
	Waiting() bool
}

// TimeBounded is implemented by a Batch that knows the smallest sample
// timestamp it holds: MaxInt64 when it holds none, MinInt64 when it cannot
// tell. A repairer may skip work that only samples older than some time
// need.
type TimeBounded interface {
	MinTime() int64
}

// Repairer decides what happens to the series of a request; package
// relabel's Pipeline implements it.
type Repairer interface {
	// Apply repairs the request in place: rewritten labels, dropped series,
	// merged sources (and merged outputs appended), rewrites that would
	// collide undone. part is its merge partition (the tenant). A non-nil
	// run must be told once every upstream answered.
	Apply(b Batch, part string) (Result, MergeRun)
}

// Retrying is what a Repairer may also implement to learn that a request of
// partition part was answered so that the sender retries it (5xx, 429): its
// shard is blocked meanwhile, and its series arrive late — the merge must
// not take their absence for an absence.
type Retrying interface {
	Retrying(part string)
}

// IdleFlusher is what a Repairer whose merge holds samples for a partition
// offers, so that they go out when the partition's sender has stopped.
type IdleFlusher interface {
	// PendingPartitions returns the partitions with samples waiting for a
	// request to ride on, each with whether it is idle: no request of it
	// for longer than the merge's wait, so every sample it holds is due.
	PendingPartitions() map[string]bool
	// Flush returns what the partition's next request would have carried:
	// the samples to send (appended outputs) and a run that holds the
	// retries and must be told what the upstreams took (nil: nothing).
	Flush(part string) ([]Emit, MergeRun)
	// KeepOrigin records how partition part's requests come, durably where
	// the state is (a restart's flush needs it: see Origin).
	KeepOrigin(part string, o Origin)
	// Origin returns what KeepOrigin last recorded for part, in this
	// process or in one before it whose state was restored; ok false: not
	// known.
	Origin(part string) (o Origin, ok bool)
	// ForgetOrigin drops part's origin: its sender has been quiet for long
	// and nothing of it is pending. A request of it records it again.
	ForgetOrigin(part string)
}

// Origin is how the requests of a merge partition come, so that a request
// sent on the partition's behalf (an idle flush) goes as its next one would
// have: with its sender's protocol and forwarded headers.
type Origin struct {
	// Proto is the remote-write message type of its last request
	// (prometheus.WriteRequest, io.prometheus.write.v2.Request).
	Proto string
	// Header holds the headers of its last request that the upstreams
	// forwarded then, as its sender sent them (canonical names). Do not
	// modify it.
	Header map[string][]string
}
