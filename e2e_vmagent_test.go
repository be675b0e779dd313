package main

// vmagent as the sender: it scrapes the fake LiteLLM (colliding None and 500
// series) and remote-writes both through rwfix into one Prometheus 3.x
// receiver and straight into a second one. vmagent appends job and instance
// after the scraped labels (out of name order) and probes with its own
// protocol first; rwfix must lose nothing of it.

import (
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func vmagentBin(t *testing.T) string {
	return needBinary(t, "vmagent v1.151.0 (go install github.com/VictoriaMetrics/VictoriaMetrics/app/vmagent@v1.151.0, see .ci/install)",
		toolPath("vmagent-v1.151.0/vmagent"), "vmagent")
}

func TestE2EVmagentSender(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with real vmagent and Prometheus; skipped with -short")
	}
	vmagent := vmagentBin(t)
	recvBin := prometheus3(t)
	exp := newFakeLiteLLM(t, true)
	behind, _ := startPrometheus(t, "receiver-behind", recvBin, receiverConfig, "--web.enable-remote-write-receiver")
	direct, _ := startPrometheus(t, "receiver-direct", recvBin, receiverConfig, "--web.enable-remote-write-receiver")
	rwfix, _ := startRwfix(t, "--upstream.url="+behind+"/api/v1/write")

	dir := t.TempDir()
	scrape := filepath.Join(dir, "scrape.yml")
	writeFile(t, scrape, fmt.Sprintf("scrape_configs:\n  - job_name: litellm\n    scrape_interval: 1s\n    static_configs: [{targets: [%q]}]\n", exp.Addr))
	port := freePort(t)
	vm := fmt.Sprintf("http://127.0.0.1:%d", port)
	startProc(t, "vmagent", vmagent, "-promscrape.config="+scrape, "-httpListenAddr=127.0.0.1:"+strconv.Itoa(port),
		"-remoteWrite.tmpDataPath="+filepath.Join(dir, "vmagent-data"), "-remoteWrite.flushInterval=1s",
		// One queue per URL, as docs/senders.md advises toward a receiver
		// that refuses out-of-order samples: with several, vmagent sends a
		// series' blocks from any queue, and a block sent again (its
		// protocol probe's, answered 415; any retry) can come after a later
		// one. A Prometheus receiver refuses it as out of order, with or
		// without rwfix, and vmagent drops it: a CI run of 1825814 saw
		// that on an untouched gauge. Not an option of rwfix: its defaults
		// are untouched.
		"-remoteWrite.queues=1",
		"-remoteWrite.url="+rwfix+"/api/v1/write", "-remoteWrite.url="+direct+"/api/v1/write")

	waitFor(t, "LiteLLM series behind rwfix", 60*time.Second, func() (bool, error) {
		r, err := query(t, behind, `litellm_proxy_total_requests_metric_total`, time.Time{})
		return err == nil && len(r) > 0, err
	})
	time.Sleep(8 * time.Second)
	exp.freeze()
	frozenAt := time.Now()
	waitFor(t, "three scrapes after the freeze", 30*time.Second, func() (bool, error) { return exp.scrapesSinceFreeze() >= 3, nil })
	waitCaughtUp(t, direct, behind, frozenAt)
	// vmagent writes to each receiver on its own: compare up to the last
	// scrape that both hold, for every series.
	at := time.Now()
	for _, base := range []string{direct, behind} {
		v, err := scalarQuery(t, base, `min(timestamp({__name__=~"litellm_(proxy|deployment)_.*_total|up"}))`, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if ts := time.UnixMilli(int64(v * 1000)); ts.Before(at) {
			at = ts
		}
	}

	// vmagent lost nothing, to either receiver.
	for _, m := range []string{"vmagent_remotewrite_packets_dropped_total", "vmagent_remotewrite_samples_dropped_total"} {
		if v := metricValue(t, vm, m); v != 0 {
			t.Errorf("vmagent %s = %v, want 0", m, v)
		}
	}
	if v := metricValue(t, rwfix, "rwfix_requests_total", `code="400"`); v != 0 {
		t.Errorf("rwfix answered %v requests 400", v)
	}
	// No None behind rwfix; the sums match the truth.
	for _, q := range []string{
		`count_over_time({__name__=~"litellm_.*", status_code="None"}[1h])`,
		`count_over_time({__name__=~"litellm_.*", exception_status="None"}[1h])`,
	} {
		if r, err := query(t, behind, q, at); err != nil || len(r) != 0 {
			t.Errorf("%s: %v %v", q, r, err)
		}
	}
	truth, _ := exp.truth()
	total, err1 := scalarQuery(t, behind, `sum(litellm_proxy_total_requests_metric_total{status_code=~"[45].."})`, at)
	failed, err2 := scalarQuery(t, behind, `sum(litellm_proxy_failed_requests_metric_total)`, at)
	if err1 != nil || err2 != nil || total != truth || failed != truth {
		t.Errorf("behind rwfix: sum(total{[45]..}) = %v, sum(failed) = %v, truth %v (%v %v)", total, failed, truth, err1, err2)
	}
	// Every merged sample is the sum of its sources as vmagent sent them.
	assertMergeExactFrom(t, direct, behind, at)
	// Every untouched series is identical, sample by sample.
	for _, sel := range []string{
		`litellm_proxy_total_requests_metric_total{status_code="200"}`,
		`litellm_proxy_failed_requests_metric_total{exception_status="429"}`,
		`up`,
	} {
		q := sel + "[1h]"
		w, err := query(t, direct, q, at)
		if err != nil {
			t.Fatal(err)
		}
		g, err := query(t, behind, q, at)
		if err != nil {
			t.Fatal(err)
		}
		render := func(r []promSample) map[string]string {
			m := map[string]string{}
			for _, s := range r {
				m[fmt.Sprint(s.Metric)] = fmt.Sprint(s.Values)
			}
			return m
		}
		wm, gm := render(w), render(g)
		if len(wm) == 0 {
			t.Fatalf("%s: nothing stored directly", sel)
		}
		for k, v := range wm {
			if gm[k] != v {
				t.Errorf("%s: %s differs behind rwfix:\n direct %s\n behind %s", sel, k, v, gm[k])
			}
		}
	}
	t.Logf("vmagent -> rwfix -> Prometheus: sums %v = %v = truth %v; rwfix sorted %v series, %v requests refused 415 (vmagent's own protocol probe)",
		total, failed, truth, metricValue(t, rwfix, "rwfix_series_sorted_total"), metricValue(t, rwfix, "rwfix_requests_total", `code="415"`))
}
