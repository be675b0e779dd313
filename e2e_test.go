package main

// End-to-end tests with real Prometheus: a fake LiteLLM exporter, a sender
// Prometheus scraping it every second and remote-writing to the rwfix binary,
// and a receiver Prometheus 3.x. Checks are PromQL over the receiver's API.

import (
	"fmt"
	"maps"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"
)

const receiverConfig = "global: {}\n"

// senderOpts shape the sender Prometheus' remote_write block.
type senderOpts struct {
	rw2 bool
	// shards > 0 forces that many shards and small batches, so that series
	// that collide after a rewrite travel in different requests.
	shards int
	// writeRelabel is a write_relabel_configs block (YAML list items,
	// indented for the remote_write entry): the naive repair.
	writeRelabel string
}

func senderConfig(exporterAddr, writeURL string, o senderOpts) string {
	extra := ""
	if o.rw2 {
		extra += "    protobuf_message: io.prometheus.write.v2.Request\n"
	}
	if o.writeRelabel != "" {
		extra += "    write_relabel_configs:\n" + o.writeRelabel
	}
	queue := ""
	if o.shards > 0 {
		queue = fmt.Sprintf("      min_shards: %d\n      max_shards: %d\n      max_samples_per_send: 8\n", o.shards, o.shards)
	}
	return fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: litellm
    static_configs:
      - targets: ['%s']
remote_write:
  - url: %s
%s    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
%s    metadata_config:
      send_interval: 5s
`, exporterAddr, writeURL, extra, queue)
}

type e2eEnv struct {
	exporter           *fakeLiteLLM
	sender, receiver   string
	rwfix              string
	senderP, receiverP *proc
	rwfixP             *proc
	rwfixPort          int
	rwfixArgs          []string
	dataDir            string
}

// startE2E starts receiver, rwfix and sender. o.rw2 chooses a Prometheus
// 3.x sender with RW 2.0; otherwise Debian's 2.42 sends RW 1.0. collide puts
// the exporter's "None" series on the same labels as genuine 500 series.
func startE2E(t *testing.T, o senderOpts, collide bool, rwfixArgs ...string) *e2eEnv {
	t.Helper()
	senderBin := ""
	if o.rw2 {
		senderBin = prometheus3(t)
	} else {
		senderBin = prometheus2(t)
	}
	recvBin := prometheus3(t)
	e := &e2eEnv{exporter: newFakeLiteLLM(t, collide)}
	e.receiver, e.receiverP = startPrometheus(t, "receiver", recvBin, receiverConfig, "--web.enable-remote-write-receiver")
	// The data directory outlives rwfix restarts within the test.
	e.dataDir = filepath.Join(t.TempDir(), "data")
	e.rwfixArgs = append([]string{"--upstream.url=" + e.receiver + "/api/v1/write", "--log.level=debug", "--storage.path=" + e.dataDir}, rwfixArgs...)
	e.rwfixPort = freePort(t)
	e.rwfix, e.rwfixP = startRwfixAt(t, e.rwfixPort, e.rwfixArgs...)
	e.sender, e.senderP = startPrometheus(t, "sender", senderBin, senderConfig(e.exporter.Addr, e.rwfix+"/api/v1/write", o))
	return e
}

// runAndFreeze lets traffic flow for d, freezes the exporter, and waits until
// the receiver holds the frozen values (samples newer than the freeze for
// every LiteLLM series). It returns the freeze time.
func (e *e2eEnv) runAndFreeze(t *testing.T, d time.Duration) time.Time {
	t.Helper()
	waitFor(t, "LiteLLM series in the receiver", 60*time.Second, func() (bool, error) {
		r, err := query(t, e.receiver, `litellm_proxy_total_requests_metric_total`, time.Time{})
		return err == nil && len(r) > 0, err
	})
	time.Sleep(d)
	e.exporter.freeze()
	frozenAt := time.Now()
	waitFor(t, "three scrapes after the freeze", 30*time.Second, func() (bool, error) {
		return e.exporter.scrapesSinceFreeze() >= 3, nil
	})
	waitCaughtUp(t, e.sender, e.receiver, frozenAt)
	return frozenAt
}

// waitCaughtUp waits until every LiteLLM counter that sources (a TSDB fed
// without rwfix) holds has reached outputs (behind rwfix) past the freeze,
// None mapped to 500 as rwfix repairs it — merged outputs included, which
// rwfix may hold while it learns their sources.
func waitCaughtUp(t *testing.T, sources, outputs string, frozenAt time.Time) {
	t.Helper()
	waitFor(t, "every LiteLLM counter past the freeze behind rwfix", 90*time.Second, func() (bool, error) {
		sel := `timestamp({__name__=~"litellm_(proxy|deployment)_.*_total"})`
		want, err := query(t, sources, sel, time.Time{})
		if err != nil {
			return false, err
		}
		got, err := query(t, outputs, sel, time.Time{})
		if err != nil {
			return false, err
		}
		newer := map[string]bool{}
		for _, s := range got {
			var ts float64
			_, _ = fmt.Sscan(fmt.Sprint(s.Value[1]), &ts)
			newer[fmt.Sprint(repairedLabels(s.Metric))] = ts > float64(frozenAt.Unix())+1
		}
		for _, s := range want {
			if !newer[fmt.Sprint(repairedLabels(s.Metric))] {
				return false, nil
			}
		}
		return len(want) > 0, nil
	})
}

// repairedLabels is a series' labels as the litellm preset leaves them.
func repairedLabels(m map[string]string) map[string]string {
	m = maps.Clone(m)
	delete(m, "__name__") // timestamp() drops it
	for _, l := range []string{"status_code", "exception_status"} {
		if m[l] == "None" {
			m[l] = "500"
		}
	}
	return m
}

func assertRepaired(t *testing.T, e *e2eEnv) {
	t.Helper()
	now := time.Now()
	// No "None" series reached the receiver, ever.
	for _, q := range []string{
		`count_over_time({__name__=~"litellm_.*", status_code="None"}[1h])`,
		`count_over_time({__name__=~"litellm_.*", exception_status="None"}[1h])`,
	} {
		r, err := query(t, e.receiver, q, now)
		if err != nil {
			t.Fatal(err)
		}
		if len(r) != 0 {
			t.Errorf("%s: want no series, got %d (e.g. %v)", q, len(r), r[0].Metric)
		}
	}
	// The aggregates match each other and the exporter's truth.
	wantTotal, wantFailed := e.exporter.truth()
	if wantTotal != wantFailed {
		t.Fatalf("fake exporter is inconsistent: total errors %v, failed %v", wantTotal, wantFailed)
	}
	total, err := scalarQuery(t, e.receiver, `sum(litellm_proxy_total_requests_metric_total{status_code=~"[45].."})`, now)
	if err != nil {
		t.Fatal(err)
	}
	failed, err := scalarQuery(t, e.receiver, `sum(litellm_proxy_failed_requests_metric_total)`, now)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("receiver: sum(total{status_code=~\"[45]..\"}) = %v, sum(failed) = %v; exporter truth %v", total, failed, wantTotal)
	if total != failed || total != wantTotal {
		t.Errorf("sum(total{status_code=~\"[45]..\"}) = %v, sum(failed) = %v, exporter truth = %v: want all equal", total, failed, wantTotal)
	}
	// The deployment counters: every failure and fallback is a 500.
	wantFail, wantFallbacks := e.exporter.deployTruth()
	for q, want := range map[string]float64{
		`sum(litellm_deployment_failure_responses_total{exception_status="500"})`:    wantFail,
		`sum(litellm_deployment_successful_fallbacks_total{exception_status="500"})`: wantFallbacks,
	} {
		if got, err := scalarQuery(t, e.receiver, q, now); err != nil || got != want {
			t.Errorf("%s = %v (%v), want the exporter's %v", q, got, err, want)
		}
	}
	// The sender lost nothing.
	if v := metricValue(t, e.sender, "prometheus_remote_storage_samples_failed_total"); v != 0 {
		t.Errorf("sender prometheus_remote_storage_samples_failed_total = %v, want 0", v)
	}
	if v := metricValue(t, e.sender, "prometheus_remote_storage_samples_dropped_total"); v != 0 {
		t.Errorf("sender prometheus_remote_storage_samples_dropped_total = %v, want 0", v)
	}
	repaired := metricValue(t, e.rwfix, "rwfix_series_repaired_total", `rule="litellm"`)
	samples := metricValue(t, e.rwfix, "rwfix_samples_received_total")
	bad := metricValue(t, e.rwfix, "rwfix_requests_total", `code="4`)
	t.Logf("rwfix: %v samples received, %v series repaired, %v requests answered 4xx, %v 5xx (retried by the sender), %v bytes of series blanked in place",
		samples, repaired, bad, metricValue(t, e.rwfix, "rwfix_requests_total", `code="5`), metricValue(t, e.rwfix, "rwfix_forwarded_blanked_bytes_total"))
	if repaired == 0 || samples == 0 {
		t.Errorf("rwfix counted %v samples and %v repairs; want both > 0", samples, repaired)
	}
	if bad != 0 {
		t.Errorf("rwfix answered %v requests with 4xx, want 0 (a 4xx makes the sender drop data)", bad)
	}
}

// assertUntouchedIdentical compares series that no rule touches, sample by
// sample (values and timestamps), between the sender's own TSDB and the
// receiver, up to the freeze.
func assertUntouchedIdentical(t *testing.T, e *e2eEnv, at time.Time) {
	t.Helper()
	for _, sel := range []string{
		`litellm_proxy_total_requests_metric_total{status_code="200"}[10m]`,
		`litellm_proxy_failed_requests_metric_total{exception_status="429"}[10m]`,
		`litellm_proxy_total_requests_metric_created{status_code="429"}[10m]`,
		`litellm_remaining_team_budget_metric[10m]`,
	} {
		want, err := query(t, e.sender, sel, at)
		if err != nil {
			t.Fatal(err)
		}
		got, err := query(t, e.receiver, sel, at)
		if err != nil {
			t.Fatal(err)
		}
		if len(want) == 0 {
			t.Errorf("%s: sender has no data", sel)
			continue
		}
		norm := func(r []promSample) []string {
			var out []string
			for _, s := range r {
				out = append(out, fmt.Sprint(s.Metric, s.Values))
			}
			sort.Strings(out)
			return out
		}
		if !reflect.DeepEqual(norm(want), norm(got)) {
			t.Errorf("%s differs between sender and receiver:\nsender:   %v\nreceiver: %v", sel, norm(want), norm(got))
		}
	}
}

func testE2E(t *testing.T, rw2 bool) {
	if testing.Short() {
		t.Skip("end-to-end test with real Prometheus; skipped with -short")
	}
	e := startE2E(t, senderOpts{rw2: rw2}, false)
	frozenAt := e.runAndFreeze(t, 6*time.Second)
	assertRepaired(t, e)
	assertUntouchedIdentical(t, e, frozenAt)
	proto := "1.0"
	if rw2 {
		proto = "2.0"
	}
	if n := metricValue(t, e.rwfix, "rwfix_requests_total", `protocol="`+proto+`"`, `code="204"`); n == 0 {
		t.Errorf("rwfix saw no successful RW %s request", proto)
	}
	// The stale marker of the vanished gauge reached the receiver: the series
	// is no longer current, though the sender scraped it.
	r, err := query(t, e.receiver, `litellm_remaining_team_budget_metric`, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(r) != 0 {
		t.Errorf("vanished gauge still current in the receiver (stale marker lost): %v", r)
	}
}

// TestE2ERW1 is Debian's Prometheus 2.42 (RW 1.0) -> rwfix -> Prometheus 3.x.
func TestE2ERW1(t *testing.T) { testE2E(t, false) }

// TestE2ERW2 is Prometheus 3.x (RW 2.0) -> rwfix -> Prometheus 3.x.
func TestE2ERW2(t *testing.T) { testE2E(t, true) }
