package main

// rwfix in the fault simulation: the real Handler, Pipeline and Merger, built
// as main.go and reload.go build them (the reloader, a configuration file, the
// litellm preset and the merge policy by default, the merge log in a data
// directory, main's idle flush every second), on the simulated clock. Requests
// go to Handler.ServeHTTP one at a time, in simulation order; rwfix forwards
// them over real HTTP to the model TSDB on 127.0.0.1.
//
// Faults on rwfix:
//   - SIGKILL between two requests, or inside one: after its log records were
//     written (all, some, or a torn last one) but before anything was
//     forwarded, or after forwarding but before answering. The process'
//     objects are abandoned without Close, and a new process starts from a
//     copy of the log cut at a record boundary at or after the point where the
//     last ANSWERED request had flushed (an answered request's records were
//     written before its answer), or inside the record after it (torn).
//   - A power loss: the log cut anywhere after the last fsync (the 10 s sync,
//     or the compaction at start), optionally followed by zero bytes.
//   - A restart without the data directory.
//   - Reloads: the preset off and on, the policy keep_distinct and back, a
//     small max_series, forward_headers on and off, and a refused reload.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"bytes"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rwfix/rwfix/remotewrite"
)

// simConfig is the content of rwfix's configuration file.
type simConfig struct {
	presetsOff     bool
	keepDistinct   bool
	forwardHeaders bool
	maxSeries      int  // 0: the default
	badCA          bool // a ca_file that does not exist: the reload must be refused
	histRule       bool // the user rule that lands one latency histogram on another
}

func (c simConfig) yaml(url string) string {
	var b strings.Builder
	if c.histRule {
		b.WriteString(simHistRule)
	}
	fmt.Fprintf(&b, "upstreams:\n  - name: tsdb\n    url: %s\n", url)
	if c.forwardHeaders {
		b.WriteString("    forward_headers: [X-Scope-OrgID]\n")
	}
	if c.badCA {
		b.WriteString("    tls_config:\n      ca_file: /nonexistent/rwfix-sim/ca.pem\n")
	}
	if c.presetsOff {
		b.WriteString("presets: []\n")
	}
	if c.keepDistinct || c.maxSeries > 0 {
		b.WriteString("collision:\n")
		if c.keepDistinct {
			b.WriteString("  policy: keep_distinct\n")
		}
		if c.maxSeries > 0 {
			fmt.Fprintf(&b, "  max_series: %d\n", c.maxSeries)
		}
	}
	return b.String()
}

// merges reports whether the configuration merges LiteLLM's collisions.
func (c simConfig) merges() bool { return !c.presetsOff && !c.keepDistinct }

// simProc is one rwfix process.
type simProc struct {
	n        int
	dir      string // its data directory
	reg      *prometheus.Registry
	handler  *remotewrite.Handler
	rl       *reloader
	answered int64 // log size when the last answered request had flushed
	synced   int64 // log size at the last fsync
	acked    []simAck
	fresh    bool // started without merge state
}

// simHeld is a request rwfix answered: when, and its source samples.
type simHeld struct {
	at      int64
	samples []simSample
}

// simAck is an answered request: the log size after its records, and the
// source samples it carried (a power loss that cuts the log before size
// loses them although the request was answered). Whatever the answer: the
// state takes a request's source samples before its upstream answers, so a
// request answered 5xx or 4xx took them too, and the sender that drops the
// batch (a 400 for the retry of a write whose first answer was lost) never
// sends them again (sim all 10000183: the TSDB took a write and answered
// 500, refused its retry as out of order, and the power loss 1 s later cut
// the records of the first attempt — within the 10 s docs/collisions.md
// allows a power loss).
type simAck struct {
	size    int64
	samples []simSample
}

type simAnswer struct {
	code       int // 0: no answer (transport error)
	msg        string
	retryAfter int64 // ms
	applied    bool  // the upstream wrote (some of) it, the answer was lost
}

type killPoint uint8

const (
	killNone          killPoint = iota
	killIdle                    // between two requests
	killBeforeForward           // records written (all, some, a torn one), nothing forwarded
	killAfterForward            // forwarded, not answered
)

// simWindow is a span of simulated time.
type simWindow struct{ from, to int64 }

func (sw simWindow) has(t int64) bool { return t >= sw.from && t <= sw.to }

// simFleet is rwfix over the run: one process at a time.
type simFleet struct {
	w       *simWorld
	rng     *rand.Rand
	cfg     simConfig // the configuration file
	cfgPath string
	cur     *simProc // nil while down
	procs   []*simProc
	calls   int
	kill    killPoint // for the next request

	// What the checker needs to know.
	stateLoss []int64                // starts without state: data dir lost, log set aside
	boots     int                    // power losses so far: the machine's boot
	rebooted  []int64                // starts after a power loss (the horizon moves)
	lostAcked map[*simSeries][]int64 // source samples answered 2xx whose records a power loss cut
	lostHeld  map[*simSeries][]int64 // source samples taken in shortly before the data directory was lost
	// recv: each source series' latest timestamp any process took in (a
	// request reached the handler). behindAtLoss: source samples scraped
	// before a power loss that no process had taken in by then (the
	// sender's shard behind): to the restarted state they are as absent as
	// the records the loss cut (see simExcuses, ambiguous restarts).
	recv         map[*simSeries]int64
	behindAtLoss map[*simSeries][]int64
	// held: the source samples of the requests rwfix answered since the
	// state was last lost (a restart without the data directory loses what
	// the state held of them).
	held     []simHeld
	unmerged []simWindow // the preset off or keep_distinct: outputs not merged
	smallMax bool        // a small max_series was accepted
	// fullWins: while a small max_series was on. An output a full state
	// left out of the merge is, like a merge turned off, started again from
	// its live sources when the limit is raised (docs/collisions.md).
	fullWins []simWindow
	fullAt   int64 // start of the current small max_series window (0: none)
	// fullBudget: what the outputs a full state refused may cost the
	// checker (see call).
	fullBudget float64
	issues     []dbIssue // rwfix-side problems (start, restarts, reloads)
	unmergedAt int64     // start of the current unmerged window (0: none)
}

func newSimFleet(w *simWorld) (*simFleet, error) {
	f := &simFleet{w: w, rng: w.rngFaults, cfgPath: filepath.Join(w.dir, "rwfix.yml"), lostAcked: map[*simSeries][]int64{}, lostHeld: map[*simSeries][]int64{}, recv: map[*simSeries]int64{}, behindAtLoss: map[*simSeries][]int64{}}
	f.cfg.histRule = w.sc.histograms
	if err := f.writeConfig(f.cfg); err != nil {
		return nil, err
	}
	if err := f.start(f.procDir(), false); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *simFleet) procDir() string {
	return filepath.Join(f.w.dir, "data-"+strconv.Itoa(len(f.procs)))
}

func (f *simFleet) writeConfig(c simConfig) error {
	return os.WriteFile(f.cfgPath, []byte(c.yaml(f.w.db.url())), 0o600)
}

func (f *simFleet) issue(check, msg string) {
	f.issues = append(f.issues, dbIssue{check: check, at: f.w.now(), msg: msg})
}

// start starts a process on dir (its merge log, if any, already there).
func (f *simFleet) start(dir string, fresh bool) error {
	p := &simProc{n: len(f.procs), dir: dir, reg: prometheus.NewRegistry(), fresh: fresh}
	logger := slog.New(slog.DiscardHandler)
	p.handler = remotewrite.NewHandler(nil, nil,
		remotewrite.WithLogger(logger),
		remotewrite.WithMetrics(remotewrite.NewMetrics(p.reg)),
		remotewrite.WithInflightLimits(256, 268435456))
	p.rl = newReloader(f.cfgPath, nil, 30*time.Second, dir, p.handler, p.reg, logger)
	p.rl.mergeClock = f.w.mergeNow
	p.rl.mergeBoot = fmt.Sprintf("sim-boot-%d", f.boots) // a power loss boots the machine again
	if err := p.rl.reload(); err != nil {
		return fmt.Errorf("rwfix did not start: %w", err)
	}
	f.procs = append(f.procs, p)
	f.cur = p
	p.synced = p.logSize()
	p.answered = p.synced
	if _, err := os.Stat(filepath.Join(dir, "merge.log.corrupt")); err == nil {
		p.fresh = true
		f.w.fault("state-loss")
		f.issue("log-set-aside", fmt.Sprintf("process %d set its merge log aside as corrupt after a crash: the state is lost (a torn tail must be ignored, a power loss must lose at most the last 10 s)", p.n))
	}
	if tmps, _ := filepath.Glob(filepath.Join(dir, ".merge-*.tmp")); len(tmps) > 0 {
		f.issue("tmp-leftover", fmt.Sprintf("process %d started with %s left over from a crash during compaction, never removed", p.n, filepath.Base(tmps[0])))
	}
	if p.fresh {
		f.stateLoss = append(f.stateLoss, f.w.now())
	}
	return nil
}

func (p *simProc) logSize() int64 {
	st, err := os.Stat(filepath.Join(p.dir, "merge.log"))
	if err != nil {
		return 0
	}
	return st.Size()
}

// metric sums a metric's series in every process (counters restart at 0).
func (f *simFleet) metric(name string) float64 {
	sum := 0.0
	for _, p := range f.procs {
		sum += simMetric(p.reg, name)
	}
	return sum
}

func simMetric(reg *prometheus.Registry, name string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// call is one request of the sender to rwfix.
func (f *simFleet) call(body []byte, batch []simSample) simAnswer {
	f.calls++
	p := f.cur
	if p == nil {
		return simAnswer{msg: "connection refused: rwfix is down"}
	}
	kill := f.kill
	f.kill = killNone
	f.w.db.beginCall(f.calls, kill == killBeforeForward)
	for _, smp := range batch {
		if smp.s.kind == kindSrcTotal || smp.s.kind == kindSrcCreated {
			f.recv[smp.s] = max(f.recv[smp.s], smp.t)
		}
	}
	before := p.logSize()
	req := httptest.NewRequest(http.MethodPost, "http://rwfix/api/v1/write", bytes.NewReader(body))
	for k, v := range simHeaders(f.w.p.proto) {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	full := 0.0
	if f.smallMax {
		full = simMetric(p.reg, "rwfix_merge_state_full_total")
	}
	p.handler.ServeHTTP(rec, req)
	if f.smallMax {
		// Each output a full state refused in this request (counted once)
		// goes out unmerged: its merged sample at each of its timestamps
		// in the request — with start timestamps checked, its start
		// timestamp there too (all seed 17007618: a refused birth failed
		// value/birth and start-ts/birth) — and its None source raw.
		if d := simMetric(p.reg, "rwfix_merge_state_full_total") - full; d > 0 {
			n := map[*simSeries]int{}
			most := 0
			for _, smp := range batch {
				n[smp.s]++
				most = max(most, n[smp.s])
			}
			perSample := 1
			if f.w.p.startTS {
				perSample = 2
			}
			f.fullBudget += d * float64(most*perSample+1)
		}
	}
	after := p.logSize()
	if kill != killNone {
		cut := after
		if kill == killBeforeForward {
			cut = f.cutPoint(p, before, after, f.w.sc.tornTails)
		}
		f.crash(fmt.Sprintf("SIGKILL inside a request (%s)", [...]string{"", "", "before forwarding", "after forwarding"}[kill]), cut, 0, true)
		return simAnswer{msg: "rwfix killed", applied: kill == killAfterForward}
	}
	p.answered = after
	ans := simAnswer{code: rec.Code, msg: strings.TrimSpace(rec.Body.String()), applied: f.w.db.lostInCall()}
	if ra, err := strconv.Atoi(rec.Header().Get("Retry-After")); err == nil {
		ans.retryAfter = int64(ra) * 1000
	}
	if f.w.sc.powerLoss || f.w.sc.dataDirLoss {
		var src []simSample
		for _, smp := range batch {
			if smp.s.kind == kindSrcTotal || smp.s.kind == kindSrcCreated {
				src = append(src, smp)
			}
		}
		if f.w.sc.powerLoss {
			p.acked = append(p.acked, simAck{size: after, samples: src})
		}
		if f.w.sc.dataDirLoss {
			// The state took the samples in whatever the answer: a 5xx
			// is retried (and may reach the next process), but a sender
			// that then drops its batch (a lost answer's retry refused)
			// never sends them again.
			f.held = append(f.held, simHeld{at: f.w.now(), samples: src})
		}
	}
	return ans
}

// logBoundaries lists the record boundaries of a merge log between from
// (itself a boundary) and to.
func logBoundaries(data []byte, from, to int64) []int64 {
	bs := []int64{from}
	for off := from; off < to; {
		n, k := binary.Uvarint(data[off:])
		if k <= 0 {
			break
		}
		next := off + int64(k) + 4 + int64(n)
		if next > to {
			break
		}
		bs = append(bs, next)
		off = next
	}
	return bs
}

// cutPoint draws where the log is cut: a record boundary in [from, to], or,
// with torn, inside the record that follows one.
func (f *simFleet) cutPoint(p *simProc, from, to int64, torn bool) int64 {
	data, err := os.ReadFile(filepath.Join(p.dir, "merge.log"))
	if err != nil || to <= from || int64(len(data)) < to {
		return min(to, int64(len(data)))
	}
	bs := logBoundaries(data, from, to)
	i := f.rng.IntN(len(bs))
	if torn && i+1 < len(bs) && f.rng.IntN(2) == 0 {
		return bs[i] + 1 + f.rng.Int64N(bs[i+1]-bs[i]-1)
	}
	return bs[i]
}

// crash ends the current process without Close: its log is copied, cut at
// cut and followed by zeros zero bytes, into the next process' directory
// (keep false: an empty one), which starts after a few seconds.
func (f *simFleet) crash(why string, cut int64, zeros int, keep bool) {
	p := f.cur
	if p == nil {
		return
	}
	f.cur = nil
	dir := f.procDir() + "-" + strconv.Itoa(f.calls)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		f.w.internal = append(f.w.internal, err.Error())
	}
	if keep {
		if data, err := os.ReadFile(filepath.Join(p.dir, "merge.log")); err == nil {
			data = append(data[:min(cut, int64(len(data)))], make([]byte, zeros)...)
			if err := os.WriteFile(filepath.Join(dir, "merge.log"), data, 0o640); err != nil {
				f.w.internal = append(f.w.internal, err.Error())
			}
		}
		if f.w.sc.compactionCrash && f.rng.IntN(3) == 0 {
			// A crash during a compaction leaves its temporary file.
			_ = os.WriteFile(filepath.Join(dir, ".merge-"+strconv.Itoa(f.calls)+".tmp"), []byte("partial snapshot"), 0o640)
		}
	}
	if f.w.sc.powerLoss && strings.HasPrefix(why, "power") {
		for _, ss := range f.w.snd.series {
			if ss.kind != kindSrcTotal && ss.kind != kindSrcCreated {
				continue
			}
			last, ok := f.recv[ss]
			for _, smp := range ss.wal {
				if (!ok || smp.t > last) && smp.t <= f.w.now() {
					f.behindAtLoss[ss] = append(f.behindAtLoss[ss], smp.t)
				}
			}
		}
	}
	if f.w.sc.powerLoss {
		for _, a := range p.acked {
			if a.size > cut {
				for _, smp := range a.samples {
					f.lostAcked[smp.s] = append(f.lostAcked[smp.s], smp.t)
				}
			}
		}
	}
	if !keep {
		// What the lost state held — samples answered to the sender, not
		// yet sent upstream — is gone with it (docs/collisions.md): what
		// was answered within the longest hold, not counting the time the
		// upstream was out (nothing is sent then).
		for _, h := range f.held {
			out := int64(0)
			for _, o := range f.w.db.outages {
				out += max(0, min(o.to, f.w.now())-max(o.from, h.at))
			}
			recent := f.w.now()-h.at <= simLostHold+out
			for _, smp := range h.samples {
				// Or longer: merged samples the state kept sending
				// while the upstream refused or failed them (retries
				// after a restart on the log, bisected, each round
				// stopped by the upstream's next fault) stay held
				// until it takes them, however long that is. The
				// receiver saw such a sample and stored nothing at t.
				// So do the output's newer samples, queued behind
				// them: the receiver refused a request with that
				// output after the sample was answered, so its queue
				// was still being settled (all 15004819).
				out := outputLabels(smp.s.kind, smp.s.set)
				if recent || f.w.db.sentNotStored(out, smp.t) || f.w.db.refusedSince(out, h.at) {
					f.lostHeld[smp.s] = append(f.lostHeld[smp.s], smp.t)
				}
			}
		}
		f.held = nil
	}
	down := 1_000 + f.rng.Int64N(15_000)
	switch {
	case !keep:
		f.w.fault("state-loss")
	case strings.HasPrefix(why, "power"):
		f.w.fault("power-loss")
		f.boots++
		f.rebooted = append(f.rebooted, f.w.now()+down)
	default:
		f.w.fault("crash")
	}
	f.w.note(-1, "rwfix %s at %s: log cut at %d of %d bytes (+%d zero bytes), keep state %v; restart at %s",
		why, rel(f.w.now()), cut, p.logSize(), zeros, keep, rel(f.w.now()+down))
	// The process is gone: only its goroutine that fsyncs the log (and the
	// upstream client's idle connections) would outlive it here.
	if m := p.rl.merger; m != nil {
		_ = m.Close()
	}
	f.w.db.srv.CloseClientConnections()
	f.w.after(down, func() {
		if err := f.start(dir, !keep); err != nil {
			f.issue("start", err.Error())
		}
	})
}

// schedule plans the scenario's faults on rwfix.
func (f *simFleet) schedule() {
	w, sc, r := f.w, f.w.sc, f.rng
	from, to := simBase+w.p.runFor/10, w.runEnd-30_000
	w.at(simBase+simSyncInterval, f.syncTick)
	w.at(simBase+simIdleFlushEvery, f.idleFlushTick)
	if sc.kills {
		for range 1 + r.IntN(3) {
			w.at(between(r, from, to), func() {
				if f.cur == nil {
					return
				}
				switch k := killPoint(1 + f.rng.IntN(3)); k {
				case killIdle:
					f.crash("SIGKILL between requests", f.cur.logSize(), 0, true)
				default:
					f.kill = k
				}
			})
		}
	}
	if sc.powerLoss {
		for range 1 + r.IntN(2) {
			w.at(between(r, from, to), func() {
				p := f.cur
				if p == nil {
					return
				}
				cut := f.cutPoint(p, p.synced, p.logSize(), true)
				zeros := 0
				if sc.zeroTails && f.rng.IntN(2) == 0 {
					zeros = 1 + f.rng.IntN(4096)
				}
				f.crash("power loss", cut, zeros, true)
			})
		}
	}
	if sc.dataDirLoss {
		w.at(between(r, from, to), func() {
			if f.cur != nil {
				f.crash("restart without its data directory", 0, 0, false)
			}
		})
	}
	if sc.reloads {
		for range 1 + r.IntN(4) {
			w.at(between(r, from, to), f.reloadOne)
		}
	}
}

// syncTick is the merge log's fsync every 10 s.
func (f *simFleet) syncTick() {
	if p := f.cur; p != nil {
		p.synced = p.logSize()
		n := 0
		for n < len(p.acked) && p.acked[n].size <= p.synced {
			n++
		}
		p.acked = p.acked[n:]
	}
	if f.w.now()+simSyncInterval <= f.w.drainEnd {
		f.w.after(simSyncInterval, f.syncTick)
	}
}

// simIdleFlushEvery is how often main.go's RunIdleFlush looks for idle
// partitions (remotewrite.IdleFlushEvery), in simulated milliseconds.
var simIdleFlushEvery = remotewrite.IdleFlushEvery.Milliseconds()

// idleFlushTick is main.go's RunIdleFlush on the simulated clock: merged
// samples of a partition no request names any more (a sender that stopped,
// or the partitions a forward_headers reload left behind) go out on rwfix's
// own. A flush is a call of its own for the TSDB's per-call faults.
func (f *simFleet) idleFlushTick() {
	if p := f.cur; p != nil {
		f.calls++
		f.w.db.beginCall(f.calls, false)
		p.handler.FlushIdle(context.Background())
	}
	if f.w.now()+simIdleFlushEvery <= f.w.drainEnd {
		f.w.after(simIdleFlushEvery, f.idleFlushTick)
	}
}

// reloadOne changes the configuration and reloads (SIGHUP); what it changed
// goes back after a few minutes (other reloads may have happened meanwhile).
func (f *simFleet) reloadOne() {
	var flip func(c *simConfig)
	switch f.rng.IntN(5) {
	case 0:
		flip = func(c *simConfig) { c.presetsOff = !c.presetsOff }
	case 1:
		flip = func(c *simConfig) { c.keepDistinct = !c.keepDistinct }
	case 2:
		n := 1 + f.rng.IntN(3)
		flip = func(c *simConfig) {
			if c.maxSeries == 0 {
				c.maxSeries = n
			} else {
				c.maxSeries = 0
			}
		}
	case 3:
		flip = func(c *simConfig) { c.forwardHeaders = !c.forwardHeaders }
	default:
		f.refusedReload()
		return
	}
	next := f.cfg
	flip(&next)
	f.apply(next)
	f.w.after(60_000+f.rng.Int64N(4*60_000), func() {
		back := f.cfg
		flip(&back)
		f.apply(back)
	})
}

// apply writes a configuration and reloads the running process with it.
func (f *simFleet) apply(c simConfig) {
	if err := f.writeConfig(c); err != nil {
		f.w.internal = append(f.w.internal, err.Error())
		return
	}
	was := f.cfg
	f.cfg = c
	f.w.note(-1, "reload at %s: %+v", rel(f.w.now()), c)
	f.w.fault("reload")
	if c.maxSeries > 0 {
		f.smallMax = true
	}
	switch {
	case was.maxSeries == 0 && c.maxSeries > 0:
		f.fullAt = f.w.now()
	case was.maxSeries > 0 && c.maxSeries == 0:
		f.fullWins = append(f.fullWins, simWindow{f.fullAt, f.w.now()})
		f.fullAt = 0
	}
	switch {
	case was.merges() && !c.merges():
		f.unmergedAt = f.w.now()
	case !was.merges() && c.merges():
		f.unmerged = append(f.unmerged, simWindow{f.unmergedAt, f.w.now()})
		f.unmergedAt = 0
	}
	if f.cur != nil {
		if err := f.cur.rl.reload(); err != nil {
			f.issue("reload", "a valid configuration was refused: "+err.Error())
		}
		f.w.db.srv.CloseClientConnections()
	}
}

// refusedReload writes a configuration that must be refused (its upstream's
// ca_file does not exist) with collision settings that would hurt (max_series
// 1), reloads, and puts the good file back.
func (f *simFleet) refusedReload() {
	bad := f.cfg
	bad.badCA, bad.maxSeries = true, 1
	if err := f.writeConfig(bad); err != nil {
		f.w.internal = append(f.w.internal, err.Error())
		return
	}
	f.w.note(-1, "refused reload at %s (ca_file missing, max_series 1)", rel(f.w.now()))
	f.w.fault("reload")
	if f.cur != nil {
		if err := f.cur.rl.reload(); err == nil {
			f.issue("reload", "a configuration with a missing ca_file was accepted")
		}
	}
	if err := f.writeConfig(f.cfg); err != nil {
		f.w.internal = append(f.w.internal, err.Error())
	}
}

// close shuts the last process down cleanly.
func (f *simFleet) close() {
	if f.unmergedAt != 0 {
		f.unmerged = append(f.unmerged, simWindow{f.unmergedAt, f.w.drainEnd})
	}
	if p := f.cur; p != nil {
		if m := p.rl.merger; m != nil {
			if err := m.Close(); err != nil && !errors.Is(err, os.ErrNotExist) {
				f.issue("close", err.Error())
			}
		}
	}
}
