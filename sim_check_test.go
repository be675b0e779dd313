package main

// The fault simulation's checker: after the drain, the model TSDB is compared
// with the oracle (the fixed LiteLLM) and with what the sender sent. Each
// invariant has a name, used in the summary and in -sim.checks:
//
//	value          a merged sample differs from the truth at its timestamp
//	               (the fixed LiteLLM's count; a stale marker where it has no
//	               series)
//	missing        no merged sample at a scrape at which a source had one
//	               (up to the end of the run; the drain lets held ones out)
//	reset          a merged counter decreases where the truth does not
//	dropped        the sender dropped a batch (rwfix or the TSDB answered 4xx)
//	untouched      a series no rule touches is not stored exactly as sent
//	created-value  a merged _created sample differs from the truth's creation
//	start-ts       RW 2.0: a merged sample's start timestamp differs from the
//	               truth's creation time
//	none-leak      a status_code="None" series reached the TSDB
//	invented       a merged sample at a timestamp that is no scrape's
//	silent-drop    the TSDB dropped a sample inside one request (two values
//	               of one series at one timestamp, or out of order)
//	concurrent     one series in two requests rwfix sent in parallel
//	undelivered    the sender still holds samples of the run after the drain
//	log-set-aside  a restart after a crash set the merge log aside
//	tmp-leftover   a compaction's temporary file survived a restart
//	rejected-config a refused reload changed the running merge
//	reload, start  a valid reload was refused, rwfix did not start
//	internal       the simulation itself failed (or rwfix panicked)
//
// A violation is excused only where a named rwfix metric counts it, at most as
// many times as it counts: rwfix_merge_unknown_samples_total for gaps after
// a start without state (data directory lost, log set aside),
// rwfix_merge_state_full_total for outputs a small max_series left unmerged
// (per count, the merged samples of the request that counted it and the None
// sample sent raw: see simFleet.call), rwfix_merge_ambiguous_restarts_total
// for an output restarted where the model LiteLLM looked restarted to its
// scrapes but its fixed counter went on (llmSet.ambiguous; per count, one
// output's wrong values and reset while that fixed counter's life lasts),
// rwfix_merge_unknown_counts_total for an output whose source's first
// sample after the merge came back from a reload was a stale marker (per
// count, one output's values from that marker on: its count is unknown to
// the restarted merge).
// Not checked at all: merged outputs while the configuration does not merge
// (the preset off, keep_distinct), from one wait before that reload to a
// minute after the merge is back (the user asked for it). A power loss may lose what was answered in the last 10 s before it (the
// promise in docs/collisions.md): gaps at those source samples are excused. A lost data
// directory loses what its state held: gaps at the source samples of the
// requests it answered within the longest hold before the loss (outages not counted: nothing is
// sent then), or earlier where the merged sample reached the receiver and was
// not stored (a retry the upstream kept refusing or failing), are excused. A sender's batch dropped after a lost answer
// loses nothing if each of its untouched samples is stored (the rewritten
// histogram under keep_distinct's marker while that policy is on).

import (
	"cmp"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
)

type simViolation struct {
	check  string
	set    int // the LiteLLM label set, -1: none
	series string
	t      int64
	msg    string
}

type simResult struct {
	seed       int64
	violations []simViolation
	excused    map[string]int
	unchecked  int
	summary    string // the run's shape, one line
	trace      string // the first violation, explained
}

func (r *simResult) checks() []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range r.violations {
		if !seen[v.check] {
			seen[v.check] = true
			out = append(out, v.check)
		}
	}
	sort.Strings(out)
	return out
}

// simExcuses are the budgets of violations rwfix's metrics account for.
type simExcuses struct {
	w       *simWorld
	unknown float64 // rwfix_merge_unknown_samples_total of processes started without state
	full    float64 // rwfix_merge_state_full_total, with a small max_series accepted
	excused map[string]int
	skipped int
	// rwfix_merge_ambiguous_restarts_total, and the outputs it paid for
	ambiguous float64
	charged   map[string]bool
	// rwfix_merge_unknown_counts_total: sources first seen as a stale
	// marker by a merge back from a reload (one count per output).
	unknownCounts float64
	lossWins      []simWindow
}

func (x *simExcuses) unmerged(t int64) bool {
	for _, win := range x.w.fix.unmerged {
		// From one wait before the reload (samples held then go out under
		// the new configuration) to a minute after the merge is back; and
		// from the start of an upstream outage that ended then: the
		// sender's backlog reaches rwfix after the outage, under the new
		// configuration — from the first of outages that follow one another
		// with the sender's shard stuck throughout (all seed 12003576: two
		// outages 4.6 s apart, the backlog of the first reaching rwfix under
		// keep_distinct after the second).
		from := win.from - 60_000
		for more := true; more; {
			more = false
			for _, o := range x.w.db.outages {
				if o.from < win.from && o.to >= from && o.from-60_000 < from {
					from, more = o.from-60_000, true
				}
			}
		}
		if t >= from && t <= win.to+60_000 {
			return true
		}
	}
	return false
}

// leftOut reports whether the output of srcs was left out of the merge by
// a full state during win (a small max_series): its None source reached the
// TSDB raw then. An output the state held all along kept its counts.
func (x *simExcuses) leftOut(srcs [2]*simSeries, win simWindow) bool {
	s := srcs[srcNone]
	if s == nil {
		return false
	}
	for _, smp := range x.w.db.stored(s.lbls) {
		if smp.t >= win.from-simLostHold && smp.t <= win.to {
			return true
		}
	}
	return false
}

// simLostHold is the longest a merged sample can be held (received, not yet
// sent): max_wait plus a request to ride on.
const simLostHold = 150_000

// excuse reports whether a violation of an output at t is accounted for.
func (x *simExcuses) excuse(check string, set *llmSet, series string, srcs [2]*simSeries, t int64) bool {
	if x.unmerged(t) {
		x.skipped++
		return true
	}
	if strings.HasPrefix(check, "value") || strings.HasPrefix(check, "reset") || strings.HasPrefix(check, "created-value") || strings.HasPrefix(check, "start-ts") {
		// A reload that took the output from the merge retired it; when the
		// merge is back, the output restarts from its live sources: the
		// count of a source that vanished before it (carried then) is no
		// longer in it (docs/collisions.md, Reloads).
		// Also after a small max_series was raised: an output the full
		// state left out restarts from its live sources alike.
		offWins := slices.Clone(x.w.fix.unmerged)
		for _, win := range x.w.fix.fullWins {
			if x.leftOut(srcs, win) {
				offWins = append(offWins, win)
			}
		}
		for _, win := range offWins {
			upTo := simWindow{math.MinInt64, win.to}
			if t > win.to && (vanished(srcs[0], upTo) || vanished(srcs[1], upTo)) {
				x.excused["a source vanished while the merge was off"]++
				return true
			}
		}
		for _, win := range offWins {
			// A source whose last sample came before the merge was back and
			// whose next is a stale marker (removed meanwhile) was never
			// live to the restarted merge: its count is unknown to it, left
			// out of the sum and counted, once per output
			// (rwfix_merge_unknown_counts_total; docs/collisions.md, Reloads).
			if at, ok := staleFirstAfter(srcs, win.to); ok && t >= at && x.chargeUnknownCount(set, series, at) {
				x.excused["rwfix_merge_unknown_counts_total"]++
				return true
			}
		}
		for _, lost := range x.w.fix.stateLoss {
			// The counts the lost state carried (a source that reset or
			// was created again alone), and its start timestamp, went with
			// it: the output drops once by them and goes on from the sum of
			// its sources (docs/collisions.md).
			if t > lost-simLostHold { // lost: the start without state
				x.excused["carry lost with the data directory"]++
				return true
			}
		}
	}
	if set != nil && (strings.HasPrefix(check, "value") || strings.HasPrefix(check, "reset") || strings.HasPrefix(check, "created-value") || strings.HasPrefix(check, "start-ts")) {
		// The set looked restarted while its fixed counter went on (a
		// source removed after another was created again, between two
		// scrapes): rwfix restarts the output and counts it; excused for
		// that output while the fixed counter's life lasts, one count each:
		// its values, and with RW 2.0 its start timestamp, which restarts
		// with it (all seed 21004144: only the start timestamp was not
		// excused).
		for _, a := range set.ambiguous {
			if t < a.t || set.truth[t].epoch != a.epoch {
				continue
			}
			key := fmt.Sprintf("%d/%s/%d", set.id, series, a.t)
			if !x.charged[key] {
				if x.ambiguous < 1 {
					break
				}
				x.ambiguous--
				x.charged[key] = true
			}
			x.excused["rwfix_merge_ambiguous_restarts_total"]++
			return true
		}
	}
	if set != nil && (strings.HasPrefix(check, "value") || strings.HasPrefix(check, "reset") || strings.HasPrefix(check, "created-value") || strings.HasPrefix(check, "start-ts")) {
		// A power loss cut records of a source's samples: the restarted
		// state takes each source that counted as gone right after its
		// last sample kept, and when every source that counted is gone and
		// one comes back created again (or is born) while another stays
		// away, the output restarts as after an exporter's restart, counted
		// in rwfix_merge_ambiguous_restarts_total (docs/collisions.md:
		// after a power loss, whether a source went on in the lost seconds
		// is unknown; a restart that may be a removal). Power loss seeds
		// 806 and 938. Excused for that output while the fixed counter's
		// life that the lost sample was in lasts, one count each. A
		// source's sample that had not reached rwfix at the power loss
		// (its shard of the sender behind, e.g. after an upstream outage)
		// is as absent from the restarted state as a cut one: rwfix cannot
		// tell the two apart, and decides alike (all seed 12006643).
		for _, s := range srcs {
			if s == nil {
				continue
			}
			for _, lost := range slices.Concat(x.w.fix.lostAcked[s], x.w.fix.behindAtLoss[s]) {
				if lost > t || set.truth[t].epoch != set.truth[lost].epoch {
					continue
				}
				key := fmt.Sprintf("%d/%s/lost/%d", set.id, series, set.truth[lost].epoch)
				if !x.charged[key] {
					if x.ambiguous < 1 {
						break
					}
					x.ambiguous--
					x.charged[key] = true
				}
				x.excused["rwfix_merge_ambiguous_restarts_total after a power loss"]++
				return true
			}
		}
	}
	if set != nil && (strings.HasPrefix(check, "value") || strings.HasPrefix(check, "created-value") || strings.HasPrefix(check, "start-ts")) {
		// A power loss cut every sample of a source the state had (they
		// came late, its shard of the sender behind) and its next sample
		// is a stale marker: the restarted state first sees it stale, its
		// count unknown, left out of the sum and counted
		// (rwfix_merge_unknown_counts_total; docs/collisions.md, What is
		// unknowable: a source first seen stale). The output's start
		// timestamp and _created value are then its other sources' (all
		// seed 21004504). Excused for that output from that marker on, one
		// count each, as after a reload.
		for which, src := range srcs {
			if src == nil {
				continue
			}
			lost := x.w.fix.lostAcked[src]
			if len(lost) == 0 {
				continue
			}
			one := [2]*simSeries{}
			one[which] = src
			if at, ok := staleFirstAfter(one, slices.Max(lost)); ok && t >= at && x.chargeUnknownCount(set, series, at) {
				x.excused["rwfix_merge_unknown_counts_total (first seen stale after a power loss)"]++
				return true
			}
		}
	}
	if set != nil && strings.HasPrefix(check, "value") {
		// A source born again (evicted, then counting from zero) whose
		// _created samples of its new life were cut by a power loss: the
		// state took its return as the same life, and learns the creation
		// time only after it has counted the new life. Where the series
		// was created again, and so the count it had before, is unknown
		// then; rwfix leaves it out of the sum and counts it
		// (rwfix_merge_unknown_counts_total; docs/collisions.md, What is
		// unknowable; all seed 20001895). Excused for that output from
		// that birth on, one count each.
		for which, s := range srcs {
			if s == nil {
				continue
			}
			created := x.w.snd.series[fmt.Sprintf("%d/%d/%d", kindSrcCreated, set.id, which)]
			births := set.births[which]
			for i := 1; i < len(births); i++ {
				b := births[i]
				if b > t || !slices.ContainsFunc(x.w.fix.lostAcked[created], func(l int64) bool { return l >= b && l <= t }) {
					continue
				}
				if x.chargeUnknownCount(set, series, b) {
					x.excused["rwfix_merge_unknown_counts_total (a birth's creation time cut by a power loss)"]++
					return true
				}
			}
		}
	}
	if strings.HasPrefix(check, "missing") {
		for _, s := range srcs {
			if s != nil && slices.Contains(x.w.fix.lostAcked[s], t) {
				x.excused["power-loss window"]++
				return true
			}
		}
		for _, s := range srcs {
			// What the lost state held — answered to the sender, finalized
			// or waiting, not yet sent — went with it: no process can know
			// or count it (docs/collisions.md). At most what was answered
			// within the longest hold before the loss (after an outage,
			// samples of long before), or what the state had sent and the
			// upstream had not stored (simFleet.crash).
			if s != nil && slices.Contains(x.w.fix.lostHeld[s], t) {
				x.excused["held by the lost data directory"]++
				return true
			}
		}
		for _, win := range x.lossWins {
			if win.has(t) && x.unknown >= 1 {
				x.unknown--
				x.excused["rwfix_merge_unknown_samples_total"]++
				return true
			}
		}
	}
	if x.full >= 1 {
		x.full--
		x.excused["rwfix_merge_state_full_total"]++
		return true
	}
	return false
}

func (w *simWorld) check() simResult {
	res := simResult{seed: w.seed, excused: map[string]int{}}
	w.faults = append(w.faults, w.db.faults...)
	slices.SortStableFunc(w.faults, func(a, b simFault) int { return cmp.Compare(a.at, b.at) })
	x := &simExcuses{w: w, excused: res.excused, charged: map[string]bool{}}
	x.ambiguous = w.fix.metric("rwfix_merge_ambiguous_restarts_total")
	x.unknownCounts = w.fix.metric("rwfix_merge_unknown_counts_total")
	for _, p := range w.fix.procs {
		// Unknowable counts are counted after a start without state, and
		// after a power loss (the horizon moves to the restart).
		x.unknown += simMetric(p.reg, "rwfix_merge_unknown_samples_total")
	}
	for _, t := range append(slices.Clone(w.fix.stateLoss), w.fix.rebooted...) {
		if t > simBase {
			x.lossWins = append(x.lossWins, simWindow{t - 10*60_000, t + 5*60_000})
		}
	}
	full := w.fix.metric("rwfix_merge_state_full_total")
	if w.fix.smallMax {
		// Each output refused in a request costs its merged samples there
		// and lets its None source out raw.
		x.full = w.fix.fullBudget
	} else if full > 0 {
		res.add(simViolation{check: "rejected-config", set: -1, t: w.drainEnd, msg: fmt.Sprintf("rwfix_merge_state_full_total is %v although no accepted configuration had a small max_series (a refused reload's collision settings were applied)", full)})
	}
	add := func(check string, set *llmSet, srcs [2]*simSeries, series string, t int64, msg string) {
		if x.excuse(check, set, series, srcs, t) {
			return
		}
		res.add(simViolation{check: check, set: set.id, series: series, t: t, msg: msg})
	}

	for _, set := range w.llm.sets {
		var srcs, created [2]*simSeries
		for which := range srcs {
			srcs[which] = w.snd.series[fmt.Sprintf("%d/%d/%d", kindSrcTotal, set.id, which)]
			created[which] = w.snd.series[fmt.Sprintf("%d/%d/%d", kindSrcCreated, set.id, which)]
		}
		if srcs[0] == nil && srcs[1] == nil {
			continue
		}
		w.checkOutput(set, srcs, kindSrcTotal, add)
		w.checkOutput(set, created, kindSrcCreated, add)
		// The None series never reaches the TSDB while the preset merges.
		for _, s := range []*simSeries{srcs[srcNone], created[srcNone]} {
			if s == nil {
				continue
			}
			for _, smp := range w.db.stored(s.lbls) {
				add("none-leak", set, srcs, s.lbls.Get("__name__"), smp.t, fmt.Sprintf("%s stored with status_code=\"None\" at %s", s.lbls.Get("__name__"), rel(smp.t)))
				break
			}
		}
	}
	// Untouched series: stored exactly as sent (up to the end of the run).
	for _, s := range w.snd.order {
		if !s.kind.untouched() {
			continue
		}
		stored := w.db.stored(s.lbls)
		if w.fix.cfg.histRule && s.id == "hist/1" {
			// keep_distinct rewrites the user rule's histogram with a
			// marker (docs/collisions.md, "keep_distinct: stateless"): a
			// sample forwarded while that policy is on is stored under the
			// marked labels instead, whenever it was scraped — a sender's
			// backlog can carry it across several outages into a
			// keep_distinct window (all/386: scraped at 249 s, in the
			// backlog of the outages 237–325 s and 328–597 s, forwarded at
			// 601 s under keep_distinct from 584 s). Each sample must be
			// stored, exactly, under one of the two.
			stored = withMarked(stored, w.db.stored(simMarked(s.lbls)))
		}
		if t, msg := sameAsSent(s, stored, w.runEnd); msg != "" {
			set := -1
			if s.set != nil {
				set = s.set.id
			}
			res.add(simViolation{check: "untouched", set: set, series: s.lbls.String(), t: t, msg: msg})
		}
	}
	for _, d := range w.snd.drops {
		// A drop that loses nothing: an upstream that took a request and
		// lost its answer refuses the retry (its older samples are out of
		// order now) — with or without rwfix. Merged samples it carried are
		// checked as outputs. A drop with nothing lost but no lost answer
		// before it is not excused: guarantee 6 of docs/collisions.md
		// promises that no batch of the sender is refused, not only that
		// no sample is lost, and the real sender counts such a batch as
		// failed samples (a batch of merge sources only, or an RW 2.0
		// partial write, loses no untouched sample and is still refused).
		lost := 0
		for _, smp := range d.batch {
			// The rewritten histogram is stored under keep_distinct's
			// marker while that policy is on.
			marked := smp.s.id == "hist/1" && storedExactly(w.db.stored(simMarked(smp.s.lbls)), smp)
			if smp.s.kind.untouched() && !storedExactly(w.db.stored(smp.s.lbls), smp) && !marked {
				lost++
			}
		}
		if lost == 0 && d.applied && !strings.Contains(d.msg, "at least one sample") {
			res.excused["drop after a lost answer, nothing lost"]++
			continue
		}
		res.add(simViolation{check: "dropped", set: -1, t: d.at, msg: fmt.Sprintf("the sender dropped a batch of %d samples (%d untouched ones never stored): HTTP %d: %.300s", len(d.batch), lost, d.code, d.msg)})
	}
	if n := w.snd.pending(w.runEnd); n > 0 {
		res.add(simViolation{check: "undelivered", set: -1, t: w.drainEnd, msg: fmt.Sprintf("%d samples of the run still in the sender after a drain of %s", n, rel(simBase+w.p.drainFor))})
	}
	for _, is := range append(w.db.issues, w.fix.issues...) {
		msg := is.msg
		if is.series != "" && !strings.Contains(msg, is.series) {
			msg = is.series + ": " + msg
		}
		res.add(simViolation{check: is.check, set: -1, series: is.series, t: is.at, msg: msg})
	}
	for _, msg := range w.internal {
		res.add(simViolation{check: "internal", set: -1, t: w.now(), msg: msg})
	}
	if *simChecks != "" {
		re := regexp.MustCompile(*simChecks)
		res.violations = slices.DeleteFunc(res.violations, func(v simViolation) bool { return !re.MatchString(v.check) })
	}
	res.unchecked = x.skipped
	res.summary = w.describe()
	res.trace = w.trace(res.violations)
	return res
}

// add keeps at most a few violations per check (the first ones tell).
func (r *simResult) add(v simViolation) {
	n := 0
	for _, o := range r.violations {
		if o.check == v.check {
			n++
		}
	}
	if n < 20 {
		r.violations = append(r.violations, v)
	}
}

type simAddFn func(check string, set *llmSet, srcs [2]*simSeries, series string, t int64, msg string)

// checkOutput checks one merged output (kind: the total or its _created)
// against the truth and its sources.
func (w *simWorld) checkOutput(set *llmSet, srcs [2]*simSeries, kind seriesKind, add simAddFn) {
	out := outputLabels(kind, set)
	name := fmt.Sprintf("set %d total", set.id)
	if kind == kindSrcCreated {
		name = fmt.Sprintf("set %d _created", set.id)
	}
	stored := w.db.stored(out)
	at := make(map[int64]dbSample, len(stored))
	for _, s := range stored {
		at[s.t] = s
	}
	// (2) a sample at every scrape at which a source had one.
	var ts []int64
	for _, s := range srcs {
		if s == nil {
			continue
		}
		for _, smp := range s.wal {
			if smp.t <= w.runEnd {
				ts = append(ts, smp.t)
			}
		}
	}
	slices.Sort(ts)
	ts = slices.Compact(ts)
	for _, t := range ts {
		if _, ok := at[t]; !ok {
			add("missing/"+w.cause(srcs, t, true), set, srcs, name, t, fmt.Sprintf("%s: no sample at %s (a source has one)", name, rel(t)))
		}
	}
	// (1) every stored sample is the truth at its timestamp; (3) no decrease
	// but where the truth resets. A wrong value that persists (the same
	// error on the following samples) keeps the cause of its first one.
	var (
		prev      *dbSample
		errCause  = map[string]string{}  // by check: the cause of the error going on
		errOffset = map[string]float64{} // the error going on
	)
	causeOf := map[float64]string{} // an error seen before, by its offset
	wrong := func(check string, t int64, offset float64, msg string) {
		cause, ok := errCause[check]
		if !ok {
			if cause, ok = causeOf[offset]; !ok {
				cause = w.cause(srcs, t, false)
			}
		}
		errCause[check], errOffset[check] = cause, offset
		if !math.IsNaN(offset) {
			causeOf[offset] = cause
		}
		add(check+"/"+cause, set, srcs, name, t, msg)
	}
	right := func(check string) { delete(errCause, check) }
	for i := range stored {
		s := stored[i]
		tr, ok := set.truth[s.t]
		switch {
		case !ok:
			add("invented", set, srcs, name, s.t, fmt.Sprintf("%s: a sample at %s, which is no scrape's timestamp", name, rel(s.t)))
			continue
		case !tr.present:
			if !value.IsStaleNaN(s.v) {
				wrong("value", s.t, math.NaN(), fmt.Sprintf("%s at %s: %v, want a stale marker (no source has a series)", name, rel(s.t), s.v))
			}
			continue
		case value.IsStaleNaN(s.v):
			wrong("value", s.t, math.NaN(), fmt.Sprintf("%s at %s: a stale marker, want %v", name, rel(s.t), w.want(kind, tr)))
			continue
		}
		check := "value"
		if kind == kindSrcCreated {
			check = "created-value"
		}
		if want := w.want(kind, tr); s.v != want {
			wrong(check, s.t, s.v-want, fmt.Sprintf("%s at %s: %v, want %v", name, rel(s.t), s.v, want))
		} else {
			right(check)
		}
		if kind == kindSrcTotal && w.p.startTS {
			if s.st != tr.created {
				wrong("start-ts", s.t, float64(s.st-tr.created), fmt.Sprintf("%s at %s: start timestamp %s, want %s", name, rel(s.t), rel(s.st), rel(tr.created)))
			} else {
				right("start-ts")
			}
		}
		if kind == kindSrcTotal && prev != nil && s.v < prev.v && set.truth[prev.t].epoch == tr.epoch {
			add("reset/"+w.cause(srcs, s.t, false), set, srcs, name, s.t, fmt.Sprintf("%s: %v at %s after %v at %s, and LiteLLM did not restart between", name, s.v, rel(s.t), prev.v, rel(prev.t)))
		}
		prev = &stored[i]
	}
}

func (w *simWorld) want(kind seriesKind, tr llmTruth) float64 {
	if kind == kindSrcCreated {
		return float64(tr.created) / 1000
	}
	return tr.v
}

// simCause tags an output's violation at t with what its sources did then,
// so that the summary separates the known kinds:
//
//	birth      a source's first sample is at t (missing: soon after t): a
//	           key's first failure of that kind
//	rebirth    a source comes back at t after being absent (evicted, or
//	           LiteLLM restarted)
//	evicted    a source is gone (its latest sample is a stale marker) while
//	           another lives
//	after-gap  every source's latest sample before t is a stale marker (a
//	           failed scrape, LiteLLM restarted): they come back at t
//	crash, power-loss, state-loss, outage, reload, lost-answer, upstream-error, dropped
//	           (the sender dropped a batch)
//	           none of these, and that fault happened shortly before or
//	           after t (the latest one)
//	other      none of these
func (w *simWorld) cause(srcs [2]*simSeries, t int64, missing bool) string {
	cause := "other"
	rank := map[string]int{"other": 0, "evicted": 1, "rebirth": 2, "after-gap": 3, "birth": 4}
	tag := func(c string) {
		if rank[c] > rank[cause] {
			cause = c
		}
	}
	allGone, anySeen, live, gone := true, false, false, false
	for _, s := range srcs {
		if s == nil {
			continue
		}
		// Evicted: its latest sample at or before t is a stale marker, while
		// another source lives.
		if i, found := slices.BinarySearchFunc(s.wal, t, func(a simSample, t int64) int { return cmp.Compare(a.t, t) }); found && !s.wal[i].stale() {
			live = true
		} else if (found && s.wal[i].stale()) || (i > 0 && s.wal[i-1].stale()) {
			gone = true
		}
		for i, smp := range s.wal {
			if missing && smp.t > t && smp.t <= t+2*60_000 && !smp.stale() && (i == 0 || s.wal[i-1].stale()) {
				if i == 0 {
					tag("birth")
				} else {
					tag("rebirth")
				}
			}
			if smp.t == t && !smp.stale() {
				switch {
				case i == 0:
					tag("birth")
				case s.wal[i-1].stale():
					tag("rebirth")
				case s.kind == kindSrcCreated && smp.v != s.wal[i-1].v, s.kind == kindSrcTotal && smp.v < s.wal[i-1].v:
					tag("rebirth") // evicted and back between two scrapes
				case s.kind == kindSrcTotal && w.createdChanged(s, t):
					tag("rebirth") // back between two scrapes, above its old count
				}
			}
		}
		// Its latest sample before t.
		if i, _ := slices.BinarySearchFunc(s.wal, t, func(a simSample, t int64) int { return cmp.Compare(a.t, t) }); i > 0 {
			anySeen = true
			if !s.wal[i-1].stale() {
				allGone = false
			}
		}
	}
	if anySeen && allGone {
		tag("after-gap")
	}
	if live && gone {
		tag("evicted")
	}
	if cause == "other" {
		// The fault that touched a sample at t: the first one from shortly
		// before t on (a sample is held, then sent, for up to a few
		// minutes), else the latest one before.
		for _, f := range w.faults {
			if f.at >= t-10*60_000 && f.at < t-2*60_000 {
				cause = f.kind
			}
			if f.at >= t-2*60_000 && f.at <= t+3*60_000 {
				cause = f.kind
				break
			}
		}
	}
	return cause
}

// createdChanged reports whether the _created series of a source total
// changed at t: the source was born again since the scrape before.
func (w *simWorld) createdChanged(s *simSeries, t int64) bool {
	c := w.snd.series[fmt.Sprintf("%d/%d/%d", kindSrcCreated, s.set.id, s.which)]
	if c == nil {
		return false
	}
	i, found := slices.BinarySearchFunc(c.wal, t, func(a simSample, t int64) int { return cmp.Compare(a.t, t) })
	return found && i > 0 && !c.wal[i].stale() && !c.wal[i-1].stale() && c.wal[i].v != c.wal[i-1].v
}

// simMarked is the rewritten latency histogram's labels as keep_distinct
// forwards it: the user rule's rewrite, with the value it replaced in a
// marker label. A sample stored there while keep_distinct was on is stored.
func simMarked(ls labels.Labels) labels.Labels {
	b := labels.NewBuilder(ls)
	b.Set("requested_model", simHistModels[0])
	b.Set("requested_model_original", ls.Get("requested_model"))
	return b.Labels()
}

// withMarked adds to raw, in order, the samples of marked (the same series
// stored under keep_distinct's marker) at timestamps raw has none of.
func withMarked(raw, marked []dbSample) []dbSample {
	if len(marked) == 0 {
		return raw
	}
	out := slices.Clone(raw)
	for _, m := range marked {
		if _, ok := slices.BinarySearchFunc(raw, m.t, func(a dbSample, t int64) int { return cmp.Compare(a.t, t) }); !ok {
			out = append(out, m)
		}
	}
	slices.SortStableFunc(out, func(a, b dbSample) int { return cmp.Compare(a.t, b.t) })
	return out
}

// storedExactly reports whether smp is stored, bit for bit.
func storedExactly(stored []dbSample, smp simSample) bool {
	i, ok := slices.BinarySearchFunc(stored, smp.t, func(a dbSample, t int64) int { return cmp.Compare(a.t, t) })
	return ok && sameSample(stored[i], smp)
}

func sameSample(d dbSample, smp simSample) bool {
	if smp.h != nil {
		return string(d.h) == smp.h.String()
	}
	return d.h == nil && math.Float64bits(d.v) == math.Float64bits(smp.v)
}

// sameAsSent compares an untouched series' stored samples with what the
// sender sent, up to end.
func sameAsSent(s *simSeries, stored []dbSample, end int64) (int64, string) {
	i := 0
	for _, smp := range s.wal {
		if smp.t > end {
			break
		}
		for i < len(stored) && stored[i].t < smp.t {
			return stored[i].t, fmt.Sprintf("%s: a sample at %s that was never sent", s.id, rel(stored[i].t))
		}
		if i >= len(stored) || stored[i].t != smp.t {
			return smp.t, fmt.Sprintf("%s: the sample at %s is missing", s.id, rel(smp.t))
		}
		if !sameSample(stored[i], smp) {
			return smp.t, fmt.Sprintf("%s at %s: %v%s stored, %v%v sent", s.id, rel(smp.t), stored[i].v, stored[i].h, smp.v, smp.h)
		}
		i++
	}
	return 0, ""
}

// describe is the run's shape, for the failure report.
func (w *simWorld) describe() string {
	return fmt.Sprintf("%s, %d shards, %d samples/send, %d label sets, run %s + drain, %d requests (%d refused by the TSDB), %d rwfix processes, ST %v",
		w.p.proto, w.p.shards, w.p.maxPerSend, w.p.sets, rel(simBase+w.p.runFor), w.snd.sent, w.db.refused, len(w.fix.procs), w.p.startTS)
}

// trace explains a seed's violations: the first of each check, then the
// first one of an output with its sources, the truth and what the TSDB
// stored around it, and the world events near it.
func (w *simWorld) trace(vs []simViolation) string {
	if len(vs) == 0 {
		return ""
	}
	var b strings.Builder
	seen := map[string]bool{}
	for _, v := range vs {
		if !seen[v.check] {
			seen[v.check] = true
			fmt.Fprintf(&b, "  %s at %s: %.400s\n", v.check, rel(v.t), v.msg)
		}
	}
	// The focus: the most telling violation (a dropped batch first).
	v := vs[0]
	rank := func(c string) int {
		return slices.Index([]string{"dropped", "silent-drop", "reset", "value", "missing", "created-value", "start-ts"}, c) + 1
	}
	for _, x := range vs {
		if rx, rv := rank(x.check), rank(v.check); rx > 0 && (rv == 0 || rx < rv) {
			v = x
		}
	}
	if v.set < 0 {
		// An output of the same time, if any, shows what went on.
		for _, x := range vs {
			if x.set >= 0 && strings.HasPrefix(x.series, "set ") && x.t >= v.t-5*simInterval && x.t <= v.t+simInterval {
				v = simViolation{check: x.check, set: x.set, series: x.series, t: v.t}
				break
			}
		}
	}
	if v.set >= 0 && v.set < len(w.llm.sets) && strings.HasPrefix(v.series, "set ") {
		set := w.llm.sets[v.set]
		kind := kindSrcTotal
		if strings.HasSuffix(v.series, "_created") {
			kind = kindSrcCreated
		}
		var srcs [2]*simSeries
		for which := range srcs {
			srcs[which] = w.snd.series[fmt.Sprintf("%d/%d/%d", kind, set.id, which)]
		}
		stored := map[int64]dbSample{}
		for _, s := range w.db.stored(outputLabels(kind, set)) {
			stored[s.t] = s
		}
		fmt.Fprintf(&b, "  %s (%s):\n  %12s %-14s %-14s %-14s %s\n", v.series, set.pairs[1], "T", "None", "500", "truth", "stored")
		var ts []int64
		for t := range set.truth {
			if t >= v.t-6*simInterval && t <= v.t+3*simInterval {
				ts = append(ts, t)
			}
		}
		slices.Sort(ts)
		num := func(v float64) string {
			if kind == kindSrcCreated {
				return "@" + rel(int64(math.Round(v*1000))) // a creation time
			}
			return fmt.Sprint(v)
		}
		for _, t := range ts {
			col := func(s *simSeries) string {
				if s == nil {
					return "-"
				}
				for _, smp := range s.wal {
					if smp.t == t {
						if smp.stale() {
							return "stale"
						}
						return num(smp.v)
					}
				}
				return "-"
			}
			tr := set.truth[t]
			truth := "absent"
			if tr.present {
				truth = num(w.want(kind, tr))
			}
			st := "-"
			if s, ok := stored[t]; ok {
				st = num(s.v)
				if value.IsStaleNaN(s.v) {
					st = "stale"
				}
			}
			mark := ""
			if t == v.t {
				mark = "  <--"
			}
			fmt.Fprintf(&b, "  %12s %-14s %-14s %-14s %s%s\n", rel(t), col(srcs[0]), col(srcs[1]), truth, st, mark)
		}
	}
	// The world events nearest to it, in time order.
	var near []simNote
	for _, nt := range w.notes {
		if (nt.set == -1 || nt.set == v.set) && nt.at >= v.t-10*60_000 && nt.at <= v.t+5*60_000 {
			near = append(near, nt)
		}
	}
	dist := func(n simNote) int64 { return max(n.at-v.t, v.t-n.at) }
	slices.SortStableFunc(near, func(a, b simNote) int { return cmp.Compare(dist(a), dist(b)) })
	near = near[:min(len(near), 14)]
	slices.SortStableFunc(near, func(a, b simNote) int { return cmp.Compare(a.at, b.at) })
	for _, nt := range near {
		fmt.Fprintf(&b, "  event: %.250s\n", nt.msg)
	}
	return b.String()
}

// chargeUnknownCount takes one count of rwfix_merge_unknown_counts_total
// for the output (once for all its violations).
func (x *simExcuses) chargeUnknownCount(set *llmSet, series string, at int64) bool {
	id := -1
	if set != nil {
		id = set.id
	}
	key := fmt.Sprintf("unknown-count/%d/%s/%d", id, series, at)
	if x.charged[key] {
		return true
	}
	if x.unknownCounts < 1 {
		return false
	}
	x.unknownCounts--
	x.charged[key] = true
	return true
}

// staleFirstAfter reports the timestamp of the stale marker of a source that
// counted before to (a non-stale sample at or before it) and whose first
// sample after to is that stale marker: a merge back at to never saw it live.
func staleFirstAfter(srcs [2]*simSeries, to int64) (int64, bool) {
	for _, s := range srcs {
		if s == nil {
			continue
		}
		counted := false
		for _, smp := range s.wal {
			if smp.t <= to {
				counted = counted || !value.IsStaleNaN(smp.v)
				continue
			}
			if counted && value.IsStaleNaN(smp.v) {
				return smp.t, true
			}
			break
		}
	}
	return 0, false
}

// vanished reports whether the source went stale (after it had counted)
// during the window.
func vanished(s *simSeries, win simWindow) bool {
	if s == nil {
		return false
	}
	seen := false
	for _, smp := range s.wal {
		if smp.t > win.to {
			break
		}
		if smp.t >= win.from && seen && value.IsStaleNaN(smp.v) {
			return true
		}
		seen = seen || !value.IsStaleNaN(smp.v)
	}
	return false
}
