package main

// TestLoad is the load benchmark: real HTTP on 127.0.0.1, a load generator
// with pre-encoded LiteLLM-like requests (timestamps advanced request after
// request, as scrapes do), a sink, and in turn the byte-forwarding baseline
// (a Go proxy that forwards the body untouched) and the rwfix binary. It
// prints CPU per million samples, peak RSS and latency of each, as ratios to
// the baseline measured in the same run. It reports; it never fails on a
// number. Run:
//
//	go test -run TestLoad -load -v -timeout 15m .
//
// -load.duration sets the saturating phase of each relay (default 6s).

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rwfix/rwfix/remotewrite/rwtest"
)

var (
	loadBench    = flag.Bool("load", false, "run the load benchmark (TestLoad)")
	loadDuration = flag.Duration("load.duration", 6*time.Second, "saturating phase per relay")
	loadProfile  = flag.String("load.cpuprofile", "", "write a CPU profile of each rwfix phase to this directory")
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
	peakRSS          int64
	p50, p99         time.Duration // unloaded: one request at a time
	samplesPerSecond float64
	errors           int64
}

func (r loadResult) cpuPerM() float64 {
	return r.cpu.Seconds() / (float64(r.samples) / 1e6)
}

// drive runs the load phases against url: a saturating phase (4 concurrent
// senders) for throughput and CPU, then 2 s of one request at a time for
// latency.
func drive(t *testing.T, url string, rw2 bool, tpls []rwtest.Template, pid int, d time.Duration, senders int) loadResult {
	ct := rwtest.ContentTypeV1
	if rw2 {
		ct = rwtest.ContentTypeV2
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}
	var (
		next    atomic.Int64 // request sequence: template next%len, round next/len
		samples atomic.Int64
		errs    atomic.Int64
	)
	send := func(scratch, dst []byte) ([]byte, []byte, time.Duration) {
		n := next.Add(1) - 1
		tpl := tpls[int(n)%len(tpls)]
		ts := int64(1_700_000_000_000) + (n/int64(len(tpls)))*15_000
		scratch, dst = tpl.Render(scratch, dst, ts)
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
	run(senders, time.Now().Add(time.Second)) // warm up: connections, merge state, pools
	samples.Store(0)
	errs.Store(0)
	cpu0, _ := procStats(pid)
	start := time.Now()
	run(senders, start.Add(d))
	elapsed := time.Since(start)
	cpu1, _ := procStats(pid)
	res := loadResult{samples: samples.Load(), cpu: cpu1 - cpu0}
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

func TestLoad(t *testing.T) {
	if !*loadBench {
		t.Skip("load benchmark: run with -load")
	}
	// The sink: answers like an RW 2.0 receiver, keeps and decodes nothing.
	sinkURL := rwtest.NewRecordingUpstream(t, rwtest.Discard()).URL

	cfg := filepath.Join(t.TempDir(), "rwfix.yml")
	// Merge from the first request: the load starts cold, production runs warm.
	writeFile(t, cfg, "collision:\n  policy: merge\n")

	type relay struct {
		name string
		args func(port int) []string
		env  func(port int) []string
	}
	baseline := relay{"baseline (byte-forwarding Go proxy)", func(int) []string { return []string{os.Args[0]} },
		func(port int) []string { return []string{fmt.Sprintf("RWFIX_FWDPROXY=127.0.0.1:%d,%s", port, sinkURL)} }}
	rwfix := relay{"rwfix", func(port int) []string {
		return []string{rwfixBin, fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--upstream.url=" + sinkURL,
			"--config.file=" + cfg, "--log.level=warn", "--storage.path=" + filepath.Join(t.TempDir(), "data")}
	}, func(int) []string { return nil }}
	flood := relay{"rwfix", func(port int) []string {
		return append(rwfix.args(port), "--web.max-inflight-requests=4")
	}, func(int) []string { return nil }}

	var rows []string
	for _, proto := range []bool{false, true} {
		pname := "RW 1.0"
		if proto {
			pname = "RW 2.0"
		}
		untouched := rwtest.Workload{Untouched: true}.Templates(proto)
		clean := rwtest.Workload{}.Templates(proto)
		repair := rwtest.Workload{NoneRatio: 0.1}.Templates(proto)
		var base loadResult
		for _, c := range []struct {
			name    string
			r       relay
			tpls    []rwtest.Template
			isBase  bool
			senders int
		}{
			{"baseline", baseline, repair, true, 4},
			{"rwfix, untouched workload (no None, no 500)", rwfix, untouched, false, 4},
			{"rwfix, clean workload (no None; 500s tracked for the merge)", rwfix, clean, false, 4},
			{"rwfix, repair-heavy (10% None)", rwfix, repair, false, 4},
			{"rwfix, repair-heavy, flood: 32 senders, --web.max-inflight-requests=4 (errors = 503s)", flood, repair, false, 32},
		} {
			port := freePort(t)
			cmd := exec.Command(c.r.args(port)[0], c.r.args(port)[1:]...)
			cmd.Env = append(os.Environ(), c.r.env(port)...)
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			url := fmt.Sprintf("http://127.0.0.1:%d/api/v1/write", port)
			waitFor(t, c.name+" to listen", 20*time.Second, func() (bool, error) {
				conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
				if err == nil {
					conn.Close()
				}
				return err == nil, err
			})
			var prof sync.WaitGroup
			if *loadProfile != "" && !c.isBase {
				prof.Go(func() {
					time.Sleep(1500 * time.Millisecond) // past the warm-up
					resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", port, int(loadDuration.Seconds())-1))
					if err != nil {
						t.Log(err)
						return
					}
					defer resp.Body.Close()
					b, _ := io.ReadAll(resp.Body)
					name := filepath.Join(*loadProfile, strings.NewReplacer(" ", "_", ",", "", "(", "", ")", "", "%", "").Replace(pname+"_"+c.name)+".pprof")
					_ = os.WriteFile(name, b, 0o644)
				})
			}
			res := drive(t, url, proto, c.tpls, cmd.Process.Pid, *loadDuration, c.senders)
			prof.Wait()
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			res.name = pname + ", " + c.name
			if c.isBase {
				base = res
			}
			rows = append(rows, fmt.Sprintf("| %s | %.0f | %.3f | %.1f× | %.0f | %.1f× | %.2f | %.2f | %.1f× | %d |",
				res.name, res.samplesPerSecond, res.cpuPerM(), res.cpuPerM()/base.cpuPerM(),
				float64(res.peakRSS)/(1<<20), float64(res.peakRSS)/float64(base.peakRSS),
				res.p50.Seconds()*1000, res.p99.Seconds()*1000, res.p99.Seconds()/base.p99.Seconds(), res.errors))
		}
	}
	out := fmt.Sprintf("machine: %d cores (%s/%s), %s; workload: LiteLLM-like, 20000 series, 2000-sample requests, 15 labels incl. a 64-hex hashed_api_key; 4 concurrent senders for %v, then one at a time for latency\n\n",
		runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), *loadDuration) +
		"| relay | samples/s | CPU-s per M samples | CPU ratio | peak RSS MiB | RSS ratio | p50 ms | p99 ms | p99 ratio | errors |\n" +
		"| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n" + strings.Join(rows, "\n")
	fmt.Println(out)
	for _, r := range rows {
		if !strings.HasSuffix(r, "| 0 |") && !strings.Contains(r, "flood") {
			t.Errorf("a relay answered errors: %s", r)
		}
	}
}
