package main

// The model LiteLLM of the fault simulation, and the oracle.
//
// LiteLLM counts requests per label set (key, user, model, team) in
// litellm_proxy_total_requests_metric_total: status_code="500" for a failure
// with an HTTP code, "None" for one without (the bug rwfix repairs), "200" for
// a success. Each is a prometheus_client Counter, exported with a _created
// gauge (its creation time in seconds), and exists from its first increment:
// a new key's first failure starts a series mid-run, and the None and the 500
// series of one key start at different scrapes, either first. An idle series
// may be evicted (absent from the scrapes) and is reborn at 0 on its next
// increment; a proxy restart makes every series start again from 0; a scrape
// may fail.
//
// The oracle is the fixed LiteLLM: one failure counter per label set, counting
// both kinds, which is what rwfix's merge must send. It is born at the first
// failure of either kind, reset by a proxy restart, and evicted only when all
// of its sources are (a fixed LiteLLM's one series is idle only when no
// failure of either kind came): so a source evicted and reborn while the other
// lives keeps its earlier count in the truth.

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/prometheus/prometheus/model/histogram"
)

const (
	srcNone = 0 // status_code="None"
	src500  = 1 // status_code="500"
)

var srcStatus = [2]string{"None", "500"}

type llmCounter struct {
	// evicted: removed at the start of this scrape interval; it is not
	// created again before the next scrape has shown it absent. (A series
	// removed and created again between two scrapes, at or above its old
	// count, is the same series to anything that reads the scrapes —
	// Prometheus' rate() included — unless a start timestamp says
	// otherwise; the truth must be what the scrapes can show.)
	evicted bool
	present bool
	v       float64
	created int64 // ms: its first increment since its (re)birth
	lastInc int64
}

func (c *llmCounter) inc(t int64) {
	if !c.present {
		c.present, c.v, c.created = true, 0, t
	}
	c.v++
	c.lastInc = t
}

// llmTruth is the fixed LiteLLM's failure counter of one label set.
type llmTruth struct {
	present bool
	v       float64
	created int64 // ms
	// epoch changes at every birth of the series (first failure, after a
	// proxy restart, after all its sources were evicted): a decrease is real
	// only across epochs.
	epoch int
}

type llmSet struct {
	id     int
	pairs  []string // LiteLLM's labels but status_code, as name, value, ...
	bornAt int64    // the key's first request
	// mix: 0 failures without a code only, 1 with a code only, 2 both.
	mix    int
	rate   float64 // failures per scrape interval
	okRate float64
	src    [2]llmCounter
	ok     llmCounter
	fixed  llmTruth
	truth  map[int64]llmTruth // at every scrape (absent when it failed)
	// lastOK: the sources at the last scrape that succeeded. ambiguous:
	// the scrapes at which the set looked restarted (a source shown before
	// gone, every source shown now created since) while the fixed counter
	// went on: a source removed after another was created again, the
	// order hidden between two scrapes. No scrape can tell it from a
	// restart; rwfix counts it (rwfix_merge_ambiguous_restarts_total).
	lastOK    llmShown
	ambiguous []llmAmbiguity
	// births: when each source's series was born, the first time and
	// again after each eviction or restart (see simExcuses.excuse).
	births [2][]int64
}

type llmShown struct {
	t       int64
	present [2]bool
	epoch   int
}

type llmAmbiguity struct {
	t     int64
	epoch int // the fixed counter's life: the excuse holds while it lasts
}

// looksRestarted records, at a scrape that succeeded at t, whether the set
// looks restarted to anything reading the scrapes while the fixed counter
// went on (llmSet.ambiguous).
func (s *llmSet) looksRestarted(t int64) {
	shown := llmShown{t: t, epoch: s.fixed.epoch}
	before, now, created := false, false, true
	for which := range s.src {
		c := &s.src[which]
		shown.present[which] = c.present
		before = before || s.lastOK.present[which]
		if c.present {
			now = true
			created = created && c.created > s.lastOK.t
		}
	}
	gone := false
	for which := range s.src {
		gone = gone || (s.lastOK.present[which] && !s.src[which].present)
	}
	if s.lastOK.t != 0 && before && now && created && gone && s.fixed.present && s.fixed.epoch == s.lastOK.epoch {
		s.ambiguous = append(s.ambiguous, llmAmbiguity{t: t, epoch: s.fixed.epoch})
	}
	s.lastOK = shown
}

type simLiteLLM struct {
	w         *simWorld
	rng       *rand.Rand
	sets      []*llmSet
	last      int64 // traffic is generated up to here
	downUntil int64 // a restart: no traffic, failed scrapes until then
	evictIdle int64
	frozen    bool // the drain: no traffic, no restart, no eviction
	// requests observed by the two latency histograms (simHistModels)
	hist [2]uint64
}

func newSimLiteLLM(w *simWorld) *simLiteLLM {
	l := &simLiteLLM{w: w, rng: w.rngLLM, last: simBase, evictIdle: (2 + w.rngLLM.Int64N(6)) * 60_000}
	users := []string{"alice", "bob", "carol", "dave", "erin", "frank"}
	models := []string{"gpt-4o", "claude-3-5-sonnet", "gemini-1.5-pro", "llama-3-70b"}
	for i := range w.p.sets {
		r := l.rng
		s := &llmSet{id: i, truth: map[int64]llmTruth{}}
		user, model := users[i%len(users)], models[(i/len(users)+i)%len(models)]
		s.pairs = []string{
			"api_key_alias", fmt.Sprintf("key-%d", i),
			"end_user", "None", // a label that carries "None" for another reason: never touched
			"hashed_api_key", fmt.Sprintf("%016x", uint64(0x9e3779b97f4a7c15)*uint64(i+1)),
			"requested_model", model,
			"team", "team-" + user,
			"user", user,
		}
		if w.sc.births && r.IntN(10) >= 4 {
			s.bornAt = between(r, simBase, simBase+w.p.runFor*8/10)
		} else {
			s.bornAt = simBase
		}
		s.mix = []int{0, 1, 2, 2, 2}[r.IntN(5)]
		if w.sc.solo {
			s.mix = r.IntN(2) // never both: nothing to merge
		}
		s.rate = 0.1 + 1.4*r.Float64()
		s.okRate = 1 + 4*r.Float64()
		l.sets = append(l.sets, s)
	}
	return l
}

// schedule plans LiteLLM's restarts.
func (l *simLiteLLM) schedule() {
	w := l.w
	if !w.sc.proxyRestarts {
		return
	}
	for range l.rng.IntN(3) {
		at := between(l.rng, simBase+w.p.runFor/5, simBase+w.p.runFor*9/10)
		w.at(at, l.restart)
	}
}

// poisson draws how many events of rate lambda happen.
func poisson(r *rand.Rand, lambda float64) int {
	limit, k, p := math.Exp(-lambda), 0, 1.0
	for k < 30 {
		p *= r.Float64()
		if p <= limit {
			break
		}
		k++
	}
	return k
}

// advanceTo generates LiteLLM's traffic up to t (exclusive): evictions of
// idle series first, then successes and failures at random instants.
func (l *simLiteLLM) advanceTo(t int64) {
	from := max(l.last, l.downUntil)
	l.last = max(l.last, t)
	if l.frozen || t-from < 2 {
		return
	}
	for _, s := range l.sets {
		for which := range s.src {
			s.src[which].evicted = false // the scrape at from showed it absent
		}
	}
	if l.w.sc.evictions {
		l.evict(from)
	}
	type incEvent struct {
		at    int64
		set   *llmSet
		which int // srcNone, src500, or 2: a success
	}
	var evs []incEvent
	for _, s := range l.sets {
		if s.bornAt >= t {
			continue
		}
		lo := max(from, s.bornAt)
		if t-lo < 2 {
			continue
		}
		frac := float64(t-lo) / float64(simInterval)
		for range poisson(l.rng, s.okRate*frac) {
			evs = append(evs, incEvent{lo + 1 + l.rng.Int64N(t-lo-1), s, 2})
		}
		for range poisson(l.rng, s.rate*frac) {
			which := s.mix
			if which == 2 {
				which = l.rng.IntN(2)
			} else {
				which = 1 - which // mix 0: None only; mix 1: 500 only
			}
			evs = append(evs, incEvent{lo + 1 + l.rng.Int64N(t-lo-1), s, which})
		}
	}
	if l.w.sc.histograms {
		for i := range l.hist {
			l.hist[i] += uint64(poisson(l.rng, 3*float64(t-from)/float64(simInterval)))
		}
	}
	slices.SortStableFunc(evs, func(a, b incEvent) int { return cmp.Compare(a.at, b.at) })
	for _, e := range evs {
		s := e.set
		if e.which == 2 {
			s.ok.inc(e.at)
			continue
		}
		if s.src[e.which].evicted {
			continue // absent until the next scrape shows it so
		}
		if !s.src[e.which].present {
			l.w.note(s.id, "LiteLLM: set %d's %s series born at %s", s.id, srcStatus[e.which], rel(e.at))
			s.births[e.which] = append(s.births[e.which], e.at)
		}
		s.src[e.which].inc(e.at)
		if !s.fixed.present {
			s.fixed = llmTruth{present: true, created: e.at, epoch: s.fixed.epoch + 1}
		}
		s.fixed.v++
	}
}

// evict removes failure series idle for longer than evictIdle (each with
// some chance, so that the None and the 500 of a key usually go at
// different times).
func (l *simLiteLLM) evict(at int64) {
	for _, s := range l.sets {
		for which := range s.src {
			c := &s.src[which]
			if c.present && at-c.lastInc > l.evictIdle && l.rng.IntN(2) == 0 {
				*c = llmCounter{evicted: true}
				l.w.note(s.id, "LiteLLM: set %d's %s series evicted (idle) at %s", s.id, srcStatus[which], rel(at))
			}
		}
		if s.fixed.present && !s.src[0].present && !s.src[1].present {
			s.fixed.present, s.fixed.v = false, 0
		}
	}
}

// restart is a proxy restart: every series starts again from 0, and the
// proxy serves no scrape for a few seconds.
func (l *simLiteLLM) restart() {
	if !l.w.running() || l.frozen {
		return
	}
	now := l.w.now()
	l.advanceTo(now)
	for _, s := range l.sets {
		s.src = [2]llmCounter{}
		s.ok = llmCounter{}
		s.fixed.present, s.fixed.v = false, 0
	}
	l.hist = [2]uint64{}
	l.downUntil = now + 5_000 + l.rng.Int64N(20_000)
	l.w.note(-1, "LiteLLM restarted at %s (down until %s)", rel(now), rel(l.downUntil))
}

// llmPoint is one sample of a scrape.
type llmPoint struct {
	kind  seriesKind
	set   *llmSet
	which int
	v     float64
	st    int64                // RW 2.0 start timestamp (ms), 0: none
	h     *histogram.Histogram // kindHist
}

// scrape is Prometheus scraping LiteLLM at t: ok false when the scrape
// failed. The oracle records the fixed LiteLLM at t.
func (l *simLiteLLM) scrape(t int64) (ok bool, pts []llmPoint) {
	l.advanceTo(t)
	failed := t < l.downUntil
	if !failed && l.w.sc.failedScrapes && l.w.running() && l.rng.IntN(50) == 0 {
		failed = true
		l.w.note(-1, "scrape at %s failed", rel(t))
	}
	for _, s := range l.sets {
		tr := s.fixed
		if failed {
			tr.present = false
		}
		s.truth[t] = tr
	}
	if failed {
		return false, nil
	}
	for _, s := range l.sets {
		s.looksRestarted(t)
	}
	st := func(c *llmCounter) int64 {
		if l.w.p.startTS {
			return c.created
		}
		return 0
	}
	if l.w.sc.histograms {
		for i, c := range l.hist {
			h := &histogram.Histogram{Schema: 0, Count: c, Sum: 0.5 * float64(c), ZeroThreshold: 0.001,
				PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{int64(c / 2), int64(c-c/2) - int64(c/2)}}
			pts = append(pts, llmPoint{kind: kindHist, which: i, h: h})
		}
	}
	for _, s := range l.sets {
		if s.ok.present {
			pts = append(pts, llmPoint{kind: kindOKTotal, set: s, which: 2, v: s.ok.v, st: st(&s.ok)},
				llmPoint{kind: kindOKCreated, set: s, which: 2, v: float64(s.ok.created) / 1000})
		}
		for which := range s.src {
			c := &s.src[which]
			if c.present {
				pts = append(pts, llmPoint{kind: kindSrcTotal, set: s, which: which, v: c.v, st: st(c)},
					llmPoint{kind: kindSrcCreated, set: s, which: which, v: float64(c.created) / 1000})
			}
		}
	}
	return true, pts
}

// freeze ends LiteLLM's traffic for the drain: the series keep their values
// and every scrape succeeds.
func (l *simLiteLLM) freeze() {
	l.advanceTo(l.w.now())
	l.frozen = true
	l.downUntil = 0
}
