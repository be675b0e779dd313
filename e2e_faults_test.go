package main

// End-to-end fault tests with real Prometheus: the receiver goes away and
// comes back, rwfix restarts; afterwards every sample the sender scraped is
// in the receiver.

import (
	"fmt"
	"testing"
	"time"
)

// assertNoSampleMissing compares, series by series, how many samples the
// sender's own TSDB and the receiver hold for series no rule touches, over
// the whole run up to at.
func assertNoSampleMissing(t *testing.T, e *e2eEnv, at time.Time) {
	t.Helper()
	for _, sel := range []string{
		`litellm_proxy_total_requests_metric_total{status_code="200"}`,
		`litellm_proxy_failed_requests_metric_total{exception_status="429"}`,
	} {
		q := fmt.Sprintf("count_over_time(%s[1h])", sel)
		want, err := query(t, e.sender, q, at)
		if err != nil {
			t.Fatal(err)
		}
		got, err := query(t, e.receiver, q, at)
		if err != nil {
			t.Fatal(err)
		}
		counts := func(r []promSample) map[string]string {
			m := map[string]string{}
			for _, s := range r {
				m[fmt.Sprint(s.Metric)] = fmt.Sprint(s.Value[1])
			}
			return m
		}
		w, g := counts(want), counts(got)
		if len(w) == 0 {
			t.Fatalf("%s: the sender has no data", q)
		}
		for k, v := range w {
			if g[k] != v {
				t.Errorf("%s: %s: sender has %s samples, receiver %s", q, k, v, g[k])
			}
		}
		t.Logf("%s: %d series, sender and receiver agree (e.g. %v samples each)", q, len(w), w[fmt.Sprint(want[0].Metric)])
	}
}

// TestE2EReceiverOutage stops the receiver for 20 s mid-run. rwfix answers
// the sender 502 meanwhile (nothing acknowledged that the receiver did not
// take), the sender retries from its WAL, and afterwards no sample is missing.
func TestE2EReceiverOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with real Prometheus; skipped with -short")
	}
	recvBin, senderBin := prometheus3(t), prometheus2(t)
	e := &e2eEnv{exporter: newFakeLiteLLM(t, false)}
	recvDir, recvPort := t.TempDir(), freePort(t)
	e.receiver, e.receiverP = startPrometheusIn(t, recvDir, recvPort, "receiver", recvBin, receiverConfig, "--web.enable-remote-write-receiver")
	e.rwfix, e.rwfixP = startRwfix(t, "--upstream.url="+e.receiver+"/api/v1/write", "--upstream.timeout=2s")
	e.sender, e.senderP = startPrometheus(t, "sender", senderBin, senderConfig(e.exporter.Addr, e.rwfix+"/api/v1/write", senderOpts{}))
	waitFor(t, "LiteLLM series in the receiver", 60*time.Second, func() (bool, error) {
		r, err := query(t, e.receiver, `litellm_proxy_total_requests_metric_total`, time.Time{})
		return err == nil && len(r) > 0, err
	})
	time.Sleep(3 * time.Second)
	e.receiverP.stop(t)
	t.Log("receiver stopped for 20 s")
	time.Sleep(20 * time.Second)
	failed := metricValue(t, e.rwfix, "rwfix_requests_total", `code="5`)
	e.receiver, e.receiverP = startPrometheusIn(t, recvDir, recvPort, "receiver", recvBin, receiverConfig, "--web.enable-remote-write-receiver")
	frozenAt := e.runAndFreeze(t, 4*time.Second)
	t.Logf("rwfix answered %v requests with 5xx during the outage", failed)
	if failed == 0 {
		t.Error("rwfix never answered 5xx while the receiver was down: the outage did not happen")
	}
	assertNoSampleMissing(t, e, frozenAt)
	assertRepaired(t, e)
}
