package main

// TestSimulation is a deterministic discrete-event simulation of the whole
// path (issue 17): a model LiteLLM scraped by a model Prometheus sender,
// which remote-writes to the REAL rwfix (Handler, Pipeline, Merger with its
// log in a data directory, built by the reloader as main.go builds it, on the
// simulated clock), which forwards over HTTP on 127.0.0.1 to a model TSDB
// with the Prometheus head's verdicts. Faults are injected at every step as
// the scenario says; an oracle (the fixed LiteLLM) says what every merged
// sample must be. See sim_world_test.go (clock, events), sim_litellm_test.go
// (LiteLLM and the oracle), sim_sender_test.go, sim_tsdb_test.go,
// sim_rwfix_test.go (rwfix and its faults), sim_check_test.go (the named
// invariants and what excuses a violation).
//
// Scenarios (simScenarios), from normal operation to everything at once:
// solo (the control: no key fails both ways), steady (keys born mid-run),
// normal (plus LiteLLM restarts, evictions, failed scrapes), then normal plus
// one fault class each: upstream, crash, powerloss, datadir, reload,
// exemplars, histograms; and all. Run the first ones first:
//
//	go test -run 'TestSimulation/(solo|steady|normal)$' .
//
// Every run is reproducible from its seed:
//
//	go test -run 'TestSimulation/normal$' -sim.seed=17 .
//
// prints that seed's violations with a trace (the output's sources, the
// truth and what the TSDB stored around the first one; the world's events
// near it). -sim.checks='value/|dropped' counts only the checks whose names
// match; -sim.seeds=N runs N seeds per scenario; -sim.soak=1h keeps drawing
// new seeds for that long per scenario; -sim.v prints every failing seed's
// trace. Check names and their causes: sim_check_test.go.

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	simSeedFlag  = flag.Int64("sim.seed", -1, "TestSimulation: run only this seed (of each scenario selected with -run)")
	simSeedsFlag = flag.Int("sim.seeds", 0, "TestSimulation: seeds per scenario (0: each scenario's CI count)")
	simSoakFlag  = flag.Duration("sim.soak", 0, "TestSimulation: keep running new seeds for this long per scenario")
	simSoakFrom  = flag.Int64("sim.soak.from", 1_000_000, "TestSimulation: with -sim.soak, the seed after which new seeds start (a soak from another start explores other seeds)")
	simVerbose   = flag.Bool("sim.v", false, "TestSimulation: print the trace of every failing seed, not only the first few")
	simChecks    = flag.String("sim.checks", "", "TestSimulation: only these checks count (a regexp on the check names, e.g. 'value/other|dropped')")
)

type simProtos uint8

const (
	simRW1 simProtos = iota
	simRW2
	simBothProtos
)

// simScenario switches fault classes on; the seed draws everything else.
type simScenario struct {
	name      string
	ciSeeds   int
	protocols simProtos
	// solo: every key fails one way only (None or 500), so that no output
	// has two sources: the control, which rwfix must pass as it is.
	solo bool
	// LiteLLM: keys born mid-run, idle series evicted, proxy restarts,
	// failed scrapes.
	births, evictions, proxyRestarts, failedScrapes bool
	// The upstream: 5xx, 429 and lost answers per request; outages.
	upstreamFaults, outages bool
	// rwfix: SIGKILL (torn log tails, a compaction's leftover), power loss
	// (zero-filled tails), restart without the data directory, reloads.
	kills, tornTails, compactionCrash bool
	powerLoss, zeroTails              bool
	dataDirLoss                       bool
	reloads                           bool
	// RW 2.0: start timestamps on the samples (by seed).
	startTimestamps bool
	// Exemplars on the counters; two native latency histograms and a user
	// rule that rewrites one onto the other (it must be forwarded
	// unrepaired).
	exemplars, histograms bool
	// size: label sets and run length (minutes) drawn in these ranges.
	minSets, maxSets int
	minRun, maxRun   int
	// regressions: seeds beyond the CI count that a soak once found
	// breaking an invariant, run with the CI seeds ever after (-sim.seeds
	// and -sim.soak run theirs only).
	regressions []int64
}

func (sc *simScenario) sets(r *rand.Rand) int { return sc.minSets + r.IntN(sc.maxSets-sc.minSets+1) }

func (sc *simScenario) runFor(r *rand.Rand) int64 {
	return int64(sc.minRun+r.IntN(sc.maxRun-sc.minRun+1)) * 60_000
}

// simScenarios, from normal operation to everything at once: run the first
// ones first.
var simScenarios = func() []*simScenario {
	base := simScenario{protocols: simBothProtos, births: true, startTimestamps: true, minSets: 3, maxSets: 8, minRun: 8, maxRun: 18}
	normal := base
	normal.evictions, normal.proxyRestarts, normal.failedScrapes = true, true, true
	mk := func(name string, seeds int, from simScenario, set func(*simScenario)) *simScenario {
		sc := from
		sc.name, sc.ciSeeds = name, seeds
		if set != nil {
			set(&sc)
		}
		return &sc
	}
	return []*simScenario{
		// The control: LiteLLM's full behaviour but no collision.
		mk("solo", 100, normal, func(sc *simScenario) { sc.solo = true }),
		// Series born mid-run (None and 500 at different scrapes), sharding,
		// deadlines: nothing else.
		mk("steady", 120, base, nil),
		// Plus LiteLLM's restarts, evictions and failed scrapes.
		mk("normal", 150, normal, func(sc *simScenario) { sc.regressions = []int64{1567, 5000129} }),
		mk("upstream", 150, normal, func(sc *simScenario) {
			sc.upstreamFaults, sc.outages = true, true
			sc.regressions = []int64{1000557}
		}),
		mk("crash", 100, normal, func(sc *simScenario) { sc.kills, sc.tornTails, sc.compactionCrash = true, true, true }),
		mk("powerloss", 60, normal, func(sc *simScenario) {
			sc.powerLoss, sc.zeroTails = true, true
			sc.regressions = []int64{3000646}
		}),
		mk("datadir", 100, normal, func(sc *simScenario) { sc.dataDirLoss = true }),
		mk("reload", 120, normal, func(sc *simScenario) {
			sc.reloads = true
			sc.regressions = []int64{1366}
		}),
		// RW 2.0 with exemplars on the counters (on merge sources too).
		mk("exemplars", 80, normal, func(sc *simScenario) { sc.protocols, sc.exemplars = simRW2, true }),
		// Native histograms and a user rule that lands one on another.
		mk("histograms", 60, normal, func(sc *simScenario) { sc.histograms = true }),
		mk("all", 50, normal, func(sc *simScenario) {
			sc.exemplars, sc.histograms = true, true
			sc.upstreamFaults, sc.outages, sc.kills, sc.tornTails, sc.compactionCrash = true, true, true, true, true
			sc.powerLoss, sc.zeroTails, sc.dataDirLoss, sc.reloads = true, true, true, true
			sc.regressions = []int64{380, 386, 1584, 1788, 1799, 1932, 2000166, 4000262, 5000090, 8000047, 9000133, 10000183, 12001615, 12003576, 12004237, 12005251, 12006643, 12006826, 12008959, 12010082, 12010375, 12010488, 12010574, 12011684, 15001395, 15004819, 17007618, 19003517, 20001895, 21004144, 21004504, 21004544,
				25005013, // a power loss's gap finalized before a creation time that decided a return
				25003954, // a source's late samples of the life before LiteLLM's restart kept its count
				30002069, // a creation between a source's last count and its stale marker taken as one already counted
				36000008, // a power loss cut a gap whole: a revival with a source born while the other may have lived, uncounted
				37001067, // a retired output of an older scheme taken back where the partition's orphan was to be adopted
			}
		}),
	}
}()

func TestSimulation(t *testing.T) {
	for _, sc := range simScenarios {
		t.Run(sc.name, func(t *testing.T) { runSimScenario(t, sc) })
	}
}

// runSimScenario runs a scenario's seeds on every core and reports, per
// invariant, the seeds that break it, with the first few traces.
func runSimScenario(t *testing.T, sc *simScenario) {
	var next func() (int64, bool)
	switch {
	case *simSeedFlag >= 0:
		done := false
		next = func() (int64, bool) {
			if done {
				return 0, false
			}
			done = true
			return *simSeedFlag, true
		}
	case *simSoakFlag > 0:
		deadline := time.Now().Add(*simSoakFlag)
		seed := *simSoakFrom
		next = func() (int64, bool) {
			seed++
			return seed, time.Now().Before(deadline)
		}
	default:
		n := sc.ciSeeds
		if *simSeedsFlag > 0 {
			n = *simSeedsFlag
		}
		seed, extra := int64(-1), sc.regressions
		if *simSeedsFlag > 0 {
			extra = nil
		}
		next = func() (int64, bool) {
			if seed+1 < int64(n) {
				seed++
				return seed, true
			}
			if len(extra) == 0 {
				return 0, false
			}
			seed, extra = extra[0], extra[1:]
			return seed, true
		}
	}
	var (
		mu      sync.Mutex
		results []simResult
		wg      sync.WaitGroup
	)
	start := time.Now()
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				mu.Lock()
				seed, ok := next()
				mu.Unlock()
				if !ok {
					return
				}
				res := runSimSeed(sc, seed)
				mu.Lock()
				results = append(results, res)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	sort.Slice(results, func(i, j int) bool { return results[i].seed < results[j].seed })
	bySeed := map[string][]int64{}
	var failed []simResult
	excused := map[string]int{}
	unchecked := 0
	for _, r := range results {
		for k, n := range r.excused {
			excused[k] += n
		}
		unchecked += r.unchecked
		if len(r.violations) == 0 {
			continue
		}
		failed = append(failed, r)
		for _, c := range r.checks() {
			bySeed[c] = append(bySeed[c], r.seed)
		}
	}
	t.Logf("%d seeds in %v; excused by metrics: %v; merged samples not checked (unmerged by configuration): %d",
		len(results), time.Since(start).Round(time.Millisecond), excused, unchecked)
	if len(failed) == 0 {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d seeds break an invariant (rerun one with -run 'TestSimulation/%s$' -sim.seed=N):\n", len(failed), len(results), sc.name)
	checks := make([]string, 0, len(bySeed))
	for c := range bySeed {
		checks = append(checks, c)
	}
	slices.Sort(checks)
	for _, c := range checks {
		seeds := bySeed[c]
		list := fmt.Sprint(seeds[:min(len(seeds), 15)])
		if len(seeds) > 15 {
			list = strings.TrimSuffix(list, "]") + " ...]"
		}
		fmt.Fprintf(&b, "  %-16s %4d seeds %s\n", c, len(seeds), list)
	}
	shown := 3
	if *simVerbose || *simSeedFlag >= 0 {
		shown = len(failed)
	}
	for _, r := range failed[:min(shown, len(failed))] {
		fmt.Fprintf(&b, "seed %d (%s):\n%s", r.seed, r.summary, r.trace)
		if *simVerbose || *simSeedFlag >= 0 {
			for _, v := range r.violations {
				fmt.Fprintf(&b, "  %s at %s: %s\n", v.check, rel(v.t), v.msg)
			}
		}
	}
	t.Error(b.String())
}

// runSimSeed runs one seed of a scenario in a directory of its own.
func runSimSeed(sc *simScenario, seed int64) (res simResult) {
	res.seed = seed
	dir, err := os.MkdirTemp("", "rwfix-sim-")
	if err != nil {
		res.violations = append(res.violations, simViolation{check: "internal", set: -1, msg: err.Error()})
		return res
	}
	defer os.RemoveAll(dir)
	w := newSimWorld(seed, sc, dir)
	defer func() {
		if r := recover(); r != nil {
			res.violations = append(res.violations, simViolation{check: "internal", set: -1, t: w.now(),
				msg: fmt.Sprintf("panic: %v\n%s", r, debug.Stack())})
		}
		if w.db != nil {
			w.db.close()
		}
	}()
	if err := w.setup(); err != nil {
		res.violations = append(res.violations, simViolation{check: "internal", set: -1, msg: err.Error()})
		return res
	}
	w.run()
	w.fix.close()
	return w.check()
}
