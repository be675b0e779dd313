package main

// TestLoad is the load benchmark: real HTTP on 127.0.0.1, a load generator
// with pre-encoded LiteLLM-like requests (timestamps advanced request after
// request, as scrapes do; compressed with golang/snappy, as Prometheus
// does), a sink, and in turn the byte-forwarding baseline
// (a Go proxy that forwards the body untouched) and the rwfix binary. It
// prints CPU per million samples, peak RSS and latency of each, as ratios to
// the baseline measured in the same run, over the workloads untouched,
// clean, sparse (0.5% None, scattered), repair-heavy (1/6 of the counters'
// series None) and catch-up (repair-heavy with sample time 20× the clock),
// then rwfix ÷ vmagent per workload. It reports; it never fails on a number
// (only on a relay's errors). Run:
//
//	go test -run TestLoad -load -v -timeout 20m .
//
// -load.duration sets the saturating phase of each relay (default 6s). The
// relays run pinned to core 0 (taskset), the generator and the sink to core 1;
// vmagent joins when found (PATH or .ci/install's cache).

import (
	"bytes"
	"cmp"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rwfix/rwfix/remotewrite/rwtest"
	"github.com/rwfix/rwfix/remotewrite/wire"
)

var (
	loadBench    = flag.Bool("load", false, "run the load benchmark (TestLoad)")
	loadDuration = flag.Duration("load.duration", 6*time.Second, "saturating phase per relay")
	loadProfile  = flag.String("load.cpuprofile", "", "write a CPU profile of each rwfix phase to this directory")
	loadHeap     = flag.String("load.heapprofile", "", "write a heap profile of each rwfix row, at its end, to this directory")
	loadOnly     = flag.String("load.only", "", "run only the rows whose name matches this regular expression (the baseline always runs)")
	loadRounds   = flag.Int("load.rounds", 1, "run every row this many times, in turn (rounds of the whole table), and report each row's run of median CPU per sample, with the range over the rounds: the machine's noise moves one run's ratios by 10-15%")
	loadCompare  = flag.String("load.compare", "", "an rwfix binary of another build: each rwfix row (one core) runs with it too, right after, as \"rwfix (compared build)\"")
)

// fwdProxyMain is the byte-forwarding baseline: it streams each request body
// to the upstream untouched and relays the answer. The test binary runs it when
// started with RWFIX_FWDPROXY=listen,upstream (see TestMain).
func fwdProxyMain(spec string) {
	listen, upstream, _ := strings.Cut(spec, ",")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Streamed: the cheapest forwarding there is, the floor.
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, upstream, r.Body)
		req.ContentLength = r.ContentLength
		for _, k := range []string{"Content-Type", "Content-Encoding", "X-Prometheus-Remote-Write-Version"} {
			req.Header.Set(k, r.Header.Get(k))
		}
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(resp.Body)
		for k, v := range resp.Header {
			if strings.HasPrefix(k, "X-Prometheus-") {
				w.Header()[k] = v
			}
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(msg)
	})
	if err := http.ListenAndServe(listen, h); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// procStats reads a process' CPU time and peak RSS from /proc.
func procStats(pid int) (cpu time.Duration, peakRSS int64) {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		cpu = time.Duration(ut+st) * time.Second / 100 // USER_HZ
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "VmHWM:") {
				kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
				peakRSS = kb << 10
			}
		}
	}
	return cpu, peakRSS
}

type loadResult struct {
	name             string
	samples          int64
	cpu              time.Duration
	peakRSS          int64         // after the warm-up
	warmPeakRSS      int64         // during the warm-up
	p50, p99         time.Duration // unloaded: one request at a time
	samplesPerSecond float64
	errors           int64
	upstream         int64 // bytes the sink received (compressed) in the saturating phase
}

// upstreamPerSample is the compressed bytes the relay sent upstream per
// sample accepted in the saturating phase (the baseline's: the sender's own).
func (r loadResult) upstreamPerSample() float64 {
	if r.samples == 0 {
		return 0
	}
	return float64(r.upstream) / float64(r.samples)
}

func (r loadResult) cpuPerM() float64 {
	return r.cpu.Seconds() / (float64(r.samples) / 1e6)
}

// pace gives each round of the load its timestamp: the wall clock (a
// minute ahead, see TestLoad), strictly increasing from round to round, so
// that the merge sees what it sees in production — every series once per
// round, its sources at one timestamp, time moving with the clock — and
// never a repeated timestamp (which it would ignore as a retry). With rate
// r > 1 sample time runs r times faster than the clock from start on, as
// when a sender replays a backlog (a catch-up).
type pace struct {
	mu     sync.Mutex
	ts     map[int64]int64
	last   int64
	offset time.Duration
	start  time.Time
	rate   float64
}

func (p *pace) at(round int64) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ts, ok := p.ts[round]; ok {
		return ts
	}
	now := time.Now()
	if p.rate > 1 {
		now = p.start.Add(time.Duration(p.rate * float64(now.Sub(p.start))))
	}
	ts := max(p.last+1, now.Add(p.offset).UnixMilli())
	p.last = ts
	p.ts[round] = ts
	delete(p.ts, round-64) // rounds still in flight are a few behind at most
	return ts
}

// drive runs the load phases against url: a warm-up, a saturating phase
// (senders concurrent senders) for throughput and CPU, then 2 s of one request
// at a time for latency. drained, when set, reports whether the relay has
// sent everything it accepted (vmagent queues): CPU is read once it has.
// rate is how many times faster than the clock sample time runs (see pace).
// sunk reports the bytes the sink has received so far.
func drive(t *testing.T, url string, rw2 bool, tpls []rwtest.Template, pid int, learn, d time.Duration, senders int, rate float64, drained func() bool, sunk func() int64) loadResult {
	ct := wire.ContentTypeV1
	if rw2 {
		ct = wire.ContentTypeV2
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}
	var (
		next    atomic.Int64 // request sequence: template next%len, round next/len
		samples atomic.Int64
		errs    atomic.Int64
		clock   = &pace{ts: map[int64]int64{}, offset: time.Minute + 5*time.Second, start: time.Now(), rate: rate}
	)
	send := func(scratch, dst []byte) ([]byte, []byte, time.Duration) {
		n := next.Add(1) - 1
		tpl := tpls[int(n)%len(tpls)]
		scratch, dst = tpl.Render(scratch, dst, clock.at(n/int64(len(tpls))))
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(dst))
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Content-Encoding", "snappy")
		start := time.Now()
		resp, err := client.Do(req)
		lat := time.Since(start)
		if err != nil {
			errs.Add(1)
			return scratch, dst, lat
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 == 2 {
			samples.Add(int64(tpl.Samples))
		} else {
			errs.Add(1)
		}
		return scratch, dst, lat
	}
	run := func(workers int, until time.Time) []time.Duration {
		var mu sync.Mutex
		var lats []time.Duration
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				var scratch, dst []byte
				var lat time.Duration
				for time.Now().Before(until) {
					scratch, dst, lat = send(scratch, dst)
					mu.Lock()
					lats = append(lats, lat)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return lats
	}
	if learn > 0 {
		// New outputs first, as in production: one scrape in flight while
		// an output with one source so far waits birth_wait for the others
		// (a lone None may gain its 500). (Saturating meanwhile would make
		// it hold hundreds of samples per source: the load's timestamps run
		// about 300 times faster than 15 s scrapes.)
		var scratch, dst []byte
		for range tpls {
			scratch, dst, _ = send(scratch, dst)
		}
		time.Sleep(learn)
	}
	run(senders, time.Now().Add(2*time.Second)) // connections, pools
	if drained != nil {
		waitFor(t, "the relay to drain its queue", 60*time.Second, func() (bool, error) { return drained(), nil })
	}
	// The warm-up's peak is reported on its own; then the peak is reset
	// (clear_refs 5), to measure the steady state's.
	_, warmPeak := procStats(pid)
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0o644)
	samples.Store(0)
	errs.Store(0)
	cpu0, _ := procStats(pid)
	up0 := sunk()
	start := time.Now()
	run(senders, start.Add(d))
	elapsed := time.Since(start)
	if drained != nil {
		waitFor(t, "the relay to drain its queue", 60*time.Second, func() (bool, error) { return drained(), nil })
	}
	cpu1, _ := procStats(pid)
	res := loadResult{samples: samples.Load(), cpu: cpu1 - cpu0, warmPeakRSS: warmPeak, upstream: sunk() - up0}
	res.samplesPerSecond = float64(res.samples) / elapsed.Seconds()
	lats := run(1, time.Now().Add(2*time.Second))
	slices.Sort(lats)
	if len(lats) > 0 {
		res.p50, res.p99 = lats[len(lats)/2], lats[len(lats)*99/100]
	}
	_, res.peakRSS = procStats(pid)
	res.errors = errs.Load()
	return res
}

// pinSelf runs every thread of this process (the load generator and the
// sink) on cpu, so that the relay has the other core to itself.
func pinSelf(t *testing.T, cpu int) {
	var set unix.CPUSet
	set.Set(cpu)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		if tid, err := strconv.Atoi(task.Name()); err == nil {
			_ = unix.SchedSetaffinity(tid, &set) // a thread may have exited
		}
	}
	t.Cleanup(func() {
		var all unix.CPUSet
		for c := range runtime.NumCPU() {
			all.Set(c)
		}
		tasks, _ := os.ReadDir("/proc/self/task")
		for _, task := range tasks {
			if tid, err := strconv.Atoi(task.Name()); err == nil {
				_ = unix.SchedSetaffinity(tid, &all)
			}
		}
	})
}

// vmagentRelabel is the same repair as rwfix's LiteLLM preset, for vmagent.
const vmagentRelabel = `- if: '{__name__=~"litellm_proxy_total_requests_metric_(total|created)", status_code="None"}'
  target_label: status_code
  replacement: "500"
- if: '{__name__=~"litellm_proxy_failed_requests_metric_(total|created)", exception_status="None"}'
  target_label: exception_status
  replacement: "500"
`

func TestLoad(t *testing.T) {
	if !*loadBench {
		t.Skip("load benchmark: run with -load")
	}
	pinned := runtime.NumCPU() >= 2
	if pinned {
		// The relay gets CPU 0, the load generator and the sink CPU 1.
		pinSelf(t, 1)
	}
	// The sink: answers like an RW 2.0 receiver, keeps and decodes nothing.
	sink := rwtest.NewRecordingUpstream(t, rwtest.Discard())
	sinkURL := sink.URL
	dir := t.TempDir()

	type relay struct {
		name string
		args func(port int) []string
		env  []string
		// drained: the relay queues (vmagent); CPU is read once it sent all.
		queues bool
	}
	taskset := func(cpus string, args []string) []string {
		if !pinned {
			return args
		}
		return append([]string{"taskset", "-c", cpus}, args...)
	}
	baseline := relay{name: "baseline (byte-forwarding Go proxy)", args: func(port int) []string {
		return taskset("0", []string{os.Args[0]})
	}}
	rwfixArgsOf := func(bin string, port int) []string {
		// Defaults: the LiteLLM preset and the merge policy, the merge log
		// in a data directory.
		return []string{bin, fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--upstream.url=" + sinkURL,
			"--log.level=warn", "--storage.path=" + filepath.Join(t.TempDir(), "data")}
	}
	rwfixArgs := func(port int) []string { return rwfixArgsOf(rwfixBin, port) }
	compared := relay{name: "rwfix (compared build)", args: func(port int) []string { return taskset("0", rwfixArgsOf(*loadCompare, port)) }}
	rwfix := relay{name: "rwfix", args: func(port int) []string { return taskset("0", rwfixArgs(port)) }}
	rwfix2 := relay{name: "rwfix", args: func(port int) []string { return taskset("0,1", rwfixArgs(port)) }, env: []string{"GOMAXPROCS=2"}}
	flood := relay{name: "rwfix", args: func(port int) []string {
		return taskset("0", append(rwfixArgs(port), "--web.max-inflight-requests=4"))
	}}
	var vmagent *relay
	if bin := findVmagent(); bin != "" {
		rules := filepath.Join(dir, "vmagent-relabel.yml")
		writeFile(t, rules, vmagentRelabel)
		vmagent = &relay{name: "vmagent", queues: true, args: func(port int) []string {
			return taskset("0", []string{bin, fmt.Sprintf("-httpListenAddr=127.0.0.1:%d", port), "-remoteWrite.url=" + sinkURL,
				"-remoteWrite.relabelConfig=" + rules, "-remoteWrite.tmpDataPath=" + filepath.Join(t.TempDir(), "vmagent"),
				"-remoteWrite.forcePromProto", "-loggerLevel=ERROR"})
		}}
	} else {
		t.Log("vmagent not found (go install github.com/VictoriaMetrics/VictoriaMetrics/app/vmagent@v1.151.0): its rows are left out")
	}

	const series = 50000
	// catchUp is how many times faster than the clock sample time runs in the
	// catch-up rows: a Prometheus replaying its backlog after an outage.
	const catchUp = 20
	// A new output with one source so far holds each timestamp birth_wait
	// (10 s) for sources born on other shards: the warm-up waits it out (see
	// drive), so that the measured phase is the steady state.
	mergeLearn := 11 * time.Second
	var rows []string
	var shares string
	// byWorkload: the RW 1.0 results of rwfix and vmagent by workload, for
	// the ratios table.
	type pair struct{ rwfix, vmagent *loadResult }
	byWorkload := map[string]*pair{}
	workloads := []string{"clean", "sparse", "repair-heavy", "catch-up", "repair-heavy, _created"}
	for _, proto := range []bool{false, true} {
		pname := "RW 1.0"
		if proto {
			pname = "RW 2.0"
		}
		untouchedW := rwtest.Workload{Series: series, Mixed: true, Untouched: true}
		cleanW := rwtest.Workload{Series: series, Mixed: true}
		// NoneRatio is of the two counters' series before the 500 twins:
		// 0.2 makes 1/6 of each counter's series None (9.1% of all).
		heavyW := rwtest.Workload{Series: series, Mixed: true, NoneRatio: 0.2, GenuineMore: true}
		sparseW := rwtest.Workload{Series: series, Mixed: true, NoneRatio: 0.005, GenuineMore: true, Scattered: true}
		// LiteLLM's exposition as prometheus_client writes it: every
		// counter series with its _created twin (rewritten and merged
		// too), the same number of series in all.
		createdW := heavyW
		createdW.Created = true
		if !proto {
			shares = fmt.Sprintf("clean: %s; sparse: %s, scattered, each colliding with a genuine 500; repair-heavy and catch-up: %s, evenly spread, each colliding with a genuine 500",
				share(cleanW), share(sparseW), share(heavyW))
		}
		untouched, clean, heavy, sparse := untouchedW.Templates(proto), cleanW.Templates(proto), heavyW.Templates(proto), sparseW.Templates(proto)
		created := createdW.Templates(proto)
		type rowSpec struct {
			name     string
			workload string // for the ratios table: rwfix and vmagent rows of one workload
			r        *relay
			tpls     []rwtest.Template
			senders  int
			learn    time.Duration // new outputs' first round before the warm-up (see drive)
			rate     float64       // sample time against the clock (see pace)
		}
		specs := []rowSpec{
			{"baseline", "", &baseline, heavy, 8, 0, 1},
			{"rwfix, untouched (no None, no 500)", "", &rwfix, untouched, 8, mergeLearn, 1},
			{"rwfix, clean (no None; every genuine 500 tracked by the merge)", "clean", &rwfix, clean, 8, mergeLearn, 1},
			{"rwfix, sparse (0.5% of the counters' series None, scattered, each colliding with a genuine 500)", "sparse", &rwfix, sparse, 8, mergeLearn, 1},
			{"rwfix, repair-heavy (1/6 of the counters' series None, each colliding with a genuine 500)", "repair-heavy", &rwfix, heavy, 8, mergeLearn, 1},
			{fmt.Sprintf("rwfix, catch-up: repair-heavy, sample time %d× the clock", catchUp), "catch-up", &rwfix, heavy, 8, mergeLearn, catchUp},
			{"rwfix, repair-heavy, GOMAXPROCS=2 on both cores (the generator shares core 1)", "", &rwfix2, heavy, 8, mergeLearn, 1},
			{"rwfix, repair-heavy, _created: every counter series with its _created twin", "repair-heavy, _created", &rwfix, created, 8, mergeLearn, 1},
		}
		if *loadCompare != "" {
			var with []rowSpec
			for _, c := range specs {
				with = append(with, c)
				if c.r == &rwfix {
					c.name, c.workload, c.r = strings.Replace(c.name, "rwfix", "rwfix (compared build)", 1), "", &compared
					with = append(with, c)
				}
			}
			specs = with
		}
		if vmagent != nil && !proto {
			// vmagent takes RW 1.0 (its RW 2.0 ingestion is not what Prometheus sends it).
			specs = append(specs,
				rowSpec{"vmagent v1.151, clean, same relabel rule", "clean", vmagent, clean, 8, 0, 1},
				rowSpec{"vmagent v1.151, sparse, same relabel rule", "sparse", vmagent, sparse, 8, 0, 1},
				rowSpec{"vmagent v1.151, repair-heavy, same relabel rule", "repair-heavy", vmagent, heavy, 8, 0, 1},
				rowSpec{fmt.Sprintf("vmagent v1.151, catch-up: repair-heavy, sample time %d× the clock, same relabel rule", catchUp), "catch-up", vmagent, heavy, 8, 0, catchUp},
				rowSpec{"vmagent v1.151, repair-heavy, _created: every counter series with its _created twin, same relabel rule", "repair-heavy, _created", vmagent, created, 8, 0, 1})
		}
		if !proto {
			specs = append(specs, rowSpec{"rwfix, repair-heavy, flood: 32 senders, --web.max-inflight-requests=4 (errors = 503s)", "", &flood, heavy, 32, mergeLearn, 1})
		}
		// runRow starts the relay of row c, drives its load, stops it and
		// returns what it measured.
		runRow := func(c rowSpec) loadResult {
			port := freePort(t)
			args := c.r.args(port)
			cmd := exec.Command(args[0], args[1:]...)
			cmd.Env = append(os.Environ(), c.r.env...)
			if c.r == &baseline {
				cmd.Env = append(cmd.Env, fmt.Sprintf("RWFIX_FWDPROXY=127.0.0.1:%d,%s", port, sinkURL))
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			url := fmt.Sprintf("http://127.0.0.1:%d/api/v1/write", port)
			t.Logf("%s: %s", c.name, strings.Join(args, " "))
			waitFor(t, c.name+" to listen", 20*time.Second, func() (bool, error) {
				conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
				if err == nil {
					conn.Close()
				}
				return err == nil, err
			})
			var drained func() bool
			if c.r.queues {
				var last int64 = -1
				drained = func() bool {
					time.Sleep(500 * time.Millisecond)
					n := sink.Discarded()
					done := n == last
					last = n
					return done
				}
			}
			var prof sync.WaitGroup
			if *loadProfile != "" && c.r.name == "rwfix" {
				prof.Go(func() {
					time.Sleep(c.learn + 2500*time.Millisecond)
					resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", port, int(loadDuration.Seconds())-1))
					if err != nil {
						t.Log(err)
						return
					}
					defer resp.Body.Close()
					b, _ := io.ReadAll(resp.Body)
					name := filepath.Join(*loadProfile, profileName(pname, c.name)+".pprof")
					_ = os.WriteFile(name, b, 0o644)
				})
			}
			res := drive(t, url, proto, c.tpls, cmd.Process.Pid, c.learn, *loadDuration, c.senders, c.rate, drained, sink.Discarded)
			prof.Wait()
			if *loadHeap != "" && c.r.name == "rwfix" {
				if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/heap", port)); err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					name := filepath.Join(*loadHeap, profileName(pname, c.name)+".heap")
					_ = os.WriteFile(name, b, 0o644)
				}
			}
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return res
		}
		runs := make([][]loadResult, len(specs)) // each row's result in each round
		for round := range max(1, *loadRounds) {
			if *loadRounds > 1 {
				t.Logf("%s: round %d of %d", pname, round+1, *loadRounds)
			}
			for k, c := range specs {
				if k > 0 && *loadOnly != "" && !regexp.MustCompile(*loadOnly).MatchString(pname+", "+c.name) {
					continue
				}
				runs[k] = append(runs[k], runRow(c))
			}
		}
		var base loadResult
		for k, c := range specs {
			if len(runs[k]) == 0 {
				continue
			}
			res, lo, hi := medianRun(runs[k])
			res.name = pname + ", " + c.name
			if k == 0 {
				base = res
			}
			if !proto && c.workload != "" {
				p := byWorkload[c.workload]
				if p == nil {
					p = &pair{}
					byWorkload[c.workload] = p
				}
				if c.r == vmagent {
					p.vmagent = &res
				} else {
					p.rwfix = &res
				}
			}
			cpu := fmt.Sprintf("%.3f", res.cpuPerM())
			if len(runs[k]) > 1 {
				cpu += fmt.Sprintf(" (%.3f–%.3f)", lo, hi)
			}
			rows = append(rows, fmt.Sprintf("| %s | %.0f | %s | %.1f× | %.0f | %.1f× | %.0f | %.2f | %.2f | %.1f× | %.1f | %d |",
				res.name, res.samplesPerSecond, cpu, res.cpuPerM()/base.cpuPerM(),
				float64(res.peakRSS)/(1<<20), float64(res.peakRSS)/float64(base.peakRSS), float64(res.warmPeakRSS)/(1<<20),
				res.p50.Seconds()*1000, res.p99.Seconds()*1000, res.p99.Seconds()/base.p99.Seconds(), res.upstreamPerSample(), res.errors))
		}
	}
	pin := "the relay pinned to core 0, the load generator and the sink on core 1"
	if !pinned {
		pin = "one core: nothing pinned"
	}
	out := fmt.Sprintf("machine: %d cores (%s/%s), %s; %s; workload: LiteLLM-like, %d series (%s), 2000-sample requests, 15 labels incl. a 64-hex hashed_api_key, timestamps paced by the clock (catch-up: %d× the clock); 8 concurrent senders for %v, then one at a time for latency\n\n",
		runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), pin, series, shares, catchUp, *loadDuration) +
		"| relay | samples/s | CPU-s per M samples | CPU ratio | peak RSS MiB | RSS ratio | warm-up peak RSS MiB | p50 ms | p99 ms | p99 ratio | upstream B/sample | errors |\n" +
		"| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n" + strings.Join(rows, "\n")
	var ratios []string
	for _, w := range workloads {
		p := byWorkload[w]
		if p == nil || p.rwfix == nil || p.vmagent == nil {
			continue
		}
		r, v := p.rwfix, p.vmagent
		ratios = append(ratios, fmt.Sprintf("| %s | %.2f (%.3f / %.3f) | %.2f (%.2f / %.2f ms) | %.2f (%.0f / %.0f MiB) | %.2f (%.0f / %.0f MiB) |",
			w, r.cpuPerM()/v.cpuPerM(), r.cpuPerM(), v.cpuPerM(),
			r.p99.Seconds()/v.p99.Seconds(), r.p99.Seconds()*1000, v.p99.Seconds()*1000,
			float64(r.peakRSS)/float64(v.peakRSS), float64(r.peakRSS)/(1<<20), float64(v.peakRSS)/(1<<20),
			float64(r.warmPeakRSS)/float64(v.warmPeakRSS), float64(r.warmPeakRSS)/(1<<20), float64(v.warmPeakRSS)/(1<<20)))
	}
	if len(ratios) > 0 {
		out += "\n\nrwfix ÷ vmagent v1.151, RW 1.0, same run (rwfix / vmagent in parentheses)\n\n" +
			"| workload | CPU per sample | p99 | peak RSS | warm-up peak RSS |\n" +
			"| --- | --- | --- | --- | --- |\n" + strings.Join(ratios, "\n")
	}
	fmt.Println(out)
	for _, r := range rows {
		if !strings.HasSuffix(r, "| 0 |") && !strings.Contains(r, "flood") {
			t.Errorf("a relay answered errors: %s", r)
		}
	}
}

// profileName is a file name for the profiles of one row.
func profileName(proto, row string) string {
	return strings.NewReplacer(" ", "_", ",", "", "(", "", ")", "", "%", "", "=", "", ";", "", ":", "", "/", "", "×", "x", "'", "").Replace(proto + "_" + row)
}

// share describes a workload's None and 500 series: their share of each
// counter's series and of all series, and how many None series a request
// carries.
func share(w rwtest.Workload) string {
	count := map[string]int{}
	ls := w.SeriesLabels()
	batch := 2000
	if w.BatchSize > 0 {
		batch = w.BatchSize
	}
	perReq := make([]int, (len(ls)+batch-1)/batch)
	for i, l := range ls {
		name := l.Get("__name__")
		count[name]++
		for _, label := range []string{"status_code", "exception_status"} {
			switch v := l.Get(label); v {
			case "None", "500":
				count[name+" "+v]++
				count[v]++
				if v == "None" {
					perReq[i/batch]++
				}
			}
		}
	}
	pc := func(a, b int) string { return strconv.FormatFloat(100*float64(a)/float64(max(b, 1)), 'f', 2, 64) + "%" }
	const total, failed = "litellm_proxy_total_requests_metric_total", "litellm_proxy_failed_requests_metric_total"
	return fmt.Sprintf("None on %s of the total-requests and %s of the failed-requests series (%d series, %s of all; %d–%d per request), 500 on %s of all",
		pc(count[total+" None"], count[total]), pc(count[failed+" None"], count[failed]), count["None"], pc(count["None"], len(ls)),
		slices.Min(perReq), slices.Max(perReq), pc(count["500"], len(ls)))
}

// findVmagent returns the path of vmagent v1.151 (where .ci/install builds
// it, else PATH), or "". Debian's victoria-metrics package ships an older
// vmagent in /usr/bin: it is not the one compared.
func findVmagent() string {
	p := toolPath("vmagent-v1.151.0/vmagent")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if p, err := exec.LookPath("vmagent"); err == nil && p != "/usr/bin/vmagent" {
		return p
	}
	return ""
}

// medianRun returns, of a row's runs, the one of median CPU per sample (of
// two, the lower), and the least and most CPU per sample among them.
func medianRun(runs []loadResult) (loadResult, float64, float64) {
	sorted := slices.SortedFunc(slices.Values(runs), func(a, b loadResult) int { return cmp.Compare(a.cpuPerM(), b.cpuPerM()) })
	return sorted[(len(sorted)-1)/2], sorted[0].cpuPerM(), sorted[len(sorted)-1].cpuPerM()
}
