package main

// Scale-out behind vmagent's consistent-hash sharding (docs/scaling.md): a
// Prometheus 3.x scrapes the fake LiteLLM and remote-writes to vmagent, which
// shards the series over N rwfix by every label except the ones rwfix
// rewrites (-remoteWrite.shardByURL.ignoreLabels=status_code,exception_status),
// so every source of an output reaches one rwfix. The rwfix run with their
// defaults and write to one Prometheus 3.x receiver. Mid-run the tier grows
// from 3 to 4 rwfix with the documented procedure: pause the senders' way in,
// let vmagent's queues and the replicas' held samples drain, restart vmagent
// with the new URL list, resume.

import (
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// gate is the senders' way in to vmagent (a Kubernetes Service): it proxies
// to vmagent, or, paused, answers 503 as a Service without ready endpoints
// refuses; the sender keeps the data and retries.
type gate struct {
	paused atomic.Bool
	proxy  *httputil.ReverseProxy
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.paused.Load() {
		http.Error(w, "paused", http.StatusServiceUnavailable)
		return
	}
	g.proxy.ServeHTTP(w, r)
}

func startGate(t *testing.T, target string) (base string, g *gate) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	g = &gate{proxy: httputil.NewSingleHostReverseProxy(u)}
	port := freePort(t)
	srv := &http.Server{Addr: "127.0.0.1:" + strconv.Itoa(port), Handler: g}
	go func() { _ = srv.ListenAndServe() }()
	t.Cleanup(func() { _ = srv.Close() })
	return fmt.Sprintf("http://127.0.0.1:%d", port), g
}

// shardedIgnoreLabels are the labels the litellm preset rewrites: vmagent
// shards by every other label.
const shardedIgnoreLabels = "status_code,exception_status"

func TestE2EShardedVmagent(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with real vmagent and Prometheus; skipped with -short")
	}
	vmagent := vmagentBin(t)
	promBin := prometheus3(t)
	exp := newFakeLiteLLM(t, true)
	receiver, _ := startPrometheus(t, "receiver", promBin, receiverConfig, "--web.enable-remote-write-receiver")

	// rwfix replicas with their defaults, each with its own data directory
	// (a StatefulSet's volumeClaimTemplates).
	var (
		rwfixes []string
		procs   []*proc
	)
	startReplica := func() {
		base, p := startRwfix(t, "--upstream.url="+receiver+"/api/v1/write")
		rwfixes, procs = append(rwfixes, base), append(procs, p)
	}
	for range 3 {
		startReplica()
	}

	// vmagent: one port and one queue directory (its PVC) across restarts.
	vmDir := t.TempDir()
	vmPort := freePort(t)
	vm := fmt.Sprintf("http://127.0.0.1:%d", vmPort)
	startVmagent := func(urls []string) *proc {
		args := []string{vmagent, "-httpListenAddr=127.0.0.1:" + strconv.Itoa(vmPort),
			"-remoteWrite.tmpDataPath=" + filepath.Join(vmDir, "queue"), "-remoteWrite.flushInterval=1s",
			"-remoteWrite.shardByURL", "-remoteWrite.shardByURL.ignoreLabels=" + shardedIgnoreLabels,
			"-remoteWrite.queues=1", "-remoteWrite.retryMaxInterval=2s"}
		for _, r := range urls {
			args = append(args, "-remoteWrite.url="+r+"/api/v1/write")
		}
		p := startProc(t, "vmagent", args...)
		waitFor(t, "vmagent to be ready", 30*time.Second, func() (bool, error) {
			resp, err := http.Get(vm + "/health")
			if err != nil {
				return false, err
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK, nil
		})
		return p
	}
	vmP := startVmagent(rwfixes)
	in, g := startGate(t, vm)
	sender, senderP := startPrometheus(t, "sender", promBin, senderConfig(exp.Addr, in+"/api/v1/write", senderOpts{}))

	// drain waits until vmagent's queues are empty and no replica holds a
	// sample (each flushes what it held once idle for the wait bound).
	drain := func(replicas []string) time.Duration {
		start := time.Now()
		waitFor(t, "vmagent's queues and every rwfix's held samples drained", 90*time.Second, func() (bool, error) {
			if v := metricValue(t, vm, "vmagent_remotewrite_pending_data_bytes"); v != 0 {
				return false, fmt.Errorf("vmagent pending %v bytes", v)
			}
			for _, r := range replicas {
				if v := metricValue(t, r, "rwfix_merge_pending_series"); v != 0 {
					return false, fmt.Errorf("%s holds %v outputs", r, v)
				}
			}
			return true, nil
		})
		return time.Since(start)
	}
	// checkReplica: rwfix refused nothing (but vmagent's protocol probe,
	// 415), and no sample came late or overdue, or was fenced or refused.
	checkReplica := func(i int) {
		r := rwfixes[i]
		for _, c := range []struct{ name, label string }{
			{"rwfix_requests_total", `code="4`}, {"rwfix_requests_total", `code="5`},
			{"rwfix_merge_late_samples_total", ""}, {"rwfix_merge_overdue_total", ""},
			{"rwfix_merge_retries_refused_total", ""}, {"rwfix_merge_fenced_samples_total", ""},
		} {
			var lbl []string
			if c.label != "" {
				lbl = append(lbl, c.label)
			}
			if v := metricValue(t, r, c.name, lbl...); v != 0 && !(c.label == `code="4` && v == metricValue(t, r, c.name, `code="415"`)) {
				t.Errorf("rwfix %d: %s{%s} = %v, want 0", i, c.name, c.label, v)
			}
		}
	}
	outputs := func(replicas []string) []float64 {
		var n []float64
		for _, r := range replicas {
			n = append(n, metricValue(t, r, "rwfix_merge_state_series"))
		}
		return n
	}

	waitFor(t, "LiteLLM series in the receiver", 60*time.Second, func() (bool, error) {
		r, err := query(t, receiver, `litellm_proxy_total_requests_metric_total`, time.Time{})
		return err == nil && len(r) > 0, err
	})
	time.Sleep(10 * time.Second)
	before := outputs(rwfixes)

	// Grow from 3 to 4, as docs/scaling.md says (one helm upgrade with
	// sharded.replicas=4 and sharded.paused=true, then paused=false):
	// 1. Pause the way in: the sender keeps its data and retries.
	g.paused.Store(true)
	// 2. The new replica starts; vmagent restarts with the new URL list (the
	//    old URLs first, in their order: each keeps its on-disk queue).
	startReplica()
	newStarted := time.Now() // after the new replica's horizon (its start)
	vmP.stop(t)
	vmP = startVmagent(rwfixes)
	// 3. Drain. 4. Resume.
	grown := drain(rwfixes)
	g.paused.Store(false)
	waitFor(t, "the new replica merging", 60*time.Second, func() (bool, error) {
		return metricValue(t, rwfixes[3], "rwfix_merge_emitted_samples_total") > 0, nil
	})
	time.Sleep(10 * time.Second)
	atFour := outputs(rwfixes)

	// Shrink back to 3: pause, drain (the leaving replica's queue in
	// vmagent and what it holds), then vmagent without its URL, resumed.
	g.paused.Store(true)
	shrunk := drain(rwfixes)
	unknownLeft := metricValue(t, rwfixes[3], "rwfix_merge_unknown_samples_total")
	checkReplica(3)
	vmP.stop(t)
	procs[3].stop(t)
	startVmagent(rwfixes[:3])
	g.paused.Store(false)
	time.Sleep(10 * time.Second)

	exp.freeze()
	frozenAt := time.Now()
	waitFor(t, "three scrapes after the freeze", 30*time.Second, func() (bool, error) { return exp.scrapesSinceFreeze() >= 3, nil })
	waitCaughtUp(t, sender, receiver, frozenAt)
	logHold(t, "at the end", rwfixes[:3])
	// Compare up to the last scrape that the receiver holds for every
	// LiteLLM counter (merged outputs wait collision.birth_wait at births).
	r, err := query(t, receiver, `min(timestamp({__name__=~"litellm_(proxy|deployment)_.*_total"}))`, time.Time{})
	if err != nil || len(r) != 1 {
		t.Fatalf("newest merged sample: %v %v", r, err)
	}
	var newest float64
	_, _ = fmt.Sscan(fmt.Sprint(r[0].Value[1]), &newest)
	at := time.UnixMilli(int64(newest * 1000))

	// Every merged sample is exact: compared with the sums of the sources in
	// the sender's own TSDB. A moved output may miss its first timestamps at
	// the new replica — those the sender scraped before that replica started
	// and delivered after the pause, where a source had not reached it yet:
	// each is counted (rwfix_merge_unknown_samples_total), none is wrong.
	want, got := mergedSamplesFrom(t, sender, receiver, at)
	compared, missing := 0, 0
	for k, w := range want {
		for ts, v := range w {
			g, ok := got[k][ts]
			if !ok {
				missing++
				var f float64
				_, _ = fmt.Sscan(ts, &f)
				if f >= float64(newStarted.UnixMilli())/1000 {
					t.Errorf("%s @%s: missing, after the new replica started", k, ts)
				}
				continue
			}
			compared++
			if g != v {
				t.Errorf("%s @%s: receiver %s, sum of the sources %s", k, ts, g, v)
			}
		}
		for ts := range got[k] {
			if _, ok := w[ts]; !ok {
				t.Errorf("%s @%s: a merged sample without sources", k, ts)
			}
		}
	}
	for i := range 3 {
		if u := metricValue(t, rwfixes[i], "rwfix_merge_unknown_samples_total"); u != 0 {
			t.Errorf("rwfix %d (not the new replica) counted %v unknown samples", i, u)
		}
		checkReplica(i)
	}
	// (unknown counts every merged family and _created; the comparison
	// covers two families.)
	if float64(missing) > unknownLeft {
		t.Errorf("%d merged samples missing, %v counted unknown: every gap must be counted", missing, unknownLeft)
	}
	if compared == 0 || len(want) < 10 {
		t.Fatalf("only %d merged outputs, %d samples compared", len(want), compared)
	}
	truth, _ := exp.truth()
	total, err1 := scalarQuery(t, receiver, `sum(litellm_proxy_total_requests_metric_total{status_code=~"[45].."})`, at)
	failed, err2 := scalarQuery(t, receiver, `sum(litellm_proxy_failed_requests_metric_total)`, at)
	if err1 != nil || err2 != nil || total != truth || failed != truth {
		t.Errorf("sum(total{[45]..}) = %v, sum(failed) = %v, truth %v (%v %v)", total, failed, truth, err1, err2)
	}
	for _, q := range []string{
		`count_over_time({__name__=~"litellm_.*", status_code="None"}[1h])`,
		`count_over_time({__name__=~"litellm_.*", exception_status="None"}[1h])`,
		`resets({__name__=~"litellm_.*_total"}[1h]) > 0`,
	} {
		if r, err := query(t, receiver, q, at); err != nil || len(r) != 0 {
			t.Errorf("%s: want nothing, got %d series (%v)", q, len(r), err)
		}
	}
	// Nothing refused or dropped anywhere on the way.
	for _, c := range []struct {
		base, name string
		labels     []string
	}{
		{sender, "prometheus_remote_storage_samples_failed_total", nil},
		{sender, "prometheus_remote_storage_samples_dropped_total", nil},
		{vm, "vmagent_remotewrite_packets_dropped_total", nil},
		{vm, "vmagent_remotewrite_samples_dropped_total", nil},
		{receiver, "prometheus_http_requests_total", []string{`handler="/api/v1/write"`, `code="4`}},
		{receiver, "prometheus_http_requests_total", []string{`handler="/api/v1/write"`, `code="5`}},
		{receiver, "prometheus_tsdb_out_of_order_samples_total", nil},
	} {
		if v := metricValue(t, c.base, c.name, c.labels...); v != 0 {
			t.Errorf("%s %s%v = %v, want 0", c.base, c.name, c.labels, v)
		}
	}
	if atFour[3] == 0 {
		t.Error("the new replica merged no output: nothing moved")
	}
	senderP.stop(t) // before vmagent: it flushes its queue on the way out
	t.Logf("merged outputs: %d series, %d samples exact, %d missing (%v counted unknown at the new replica); sums %v = %v = truth %v",
		len(want), compared, missing, unknownLeft, total, failed, truth)
	t.Logf("outputs per replica: at 3 %v, at 4 %v, back at 3 %v; drains took %v (grow) and %v (shrink)",
		before, atFour, outputs(rwfixes[:3]), grown.Round(100*time.Millisecond), shrunk.Round(100*time.Millisecond))
}

// logHold logs, per replica, how long merged outputs were held (the latency
// the merge adds: none where every possible source is known, birth_wait at
// each timestamp of an output with one source so far, e.g. a None without a
// genuine 500) and how many were finalized without a source (overdue).
func logHold(t *testing.T, when string, rwfixes []string) {
	t.Helper()
	for i, r := range rwfixes {
		n := metricValue(t, r, "rwfix_merge_hold_seconds_count")
		if n == 0 {
			continue
		}
		t.Logf("%s: rwfix %d: %v timestamps held, mean %.2f s, %.0f%% within 10 ms, %.0f%% 1 s, %.0f%% 5 s, %.0f%% 10 s, %.0f%% 15 s; %v overdue, %v idle flushes",
			when, i, n, metricValue(t, r, "rwfix_merge_hold_seconds_sum")/n,
			100*metricValue(t, r, "rwfix_merge_hold_seconds_bucket", `le="0.01"`)/n,
			100*metricValue(t, r, "rwfix_merge_hold_seconds_bucket", `le="1"`)/n,
			100*metricValue(t, r, "rwfix_merge_hold_seconds_bucket", `le="5"`)/n,
			100*metricValue(t, r, "rwfix_merge_hold_seconds_bucket", `le="10"`)/n,
			100*metricValue(t, r, "rwfix_merge_hold_seconds_bucket", `le="15"`)/n,
			metricValue(t, r, "rwfix_merge_overdue_total"), metricValue(t, r, "rwfix_merge_idle_flushes_total"))
	}
}
