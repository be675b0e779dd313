package main

// End-to-end tests of the collision trap with real Prometheus: the fake
// LiteLLM exporter has "None" and genuine "500" series with otherwise
// identical labels, and the sender is forced to use several shards and small
// batches, so that the two sources of one output travel in different,
// concurrent requests.

import (
	"fmt"
	"testing"
	"time"
)

const collisionShards = 4

// assertCounterSafe checks what the merge promises, over the whole run.
func assertCounterSafe(t *testing.T, e *e2eEnv) {
	t.Helper()
	assertRepaired(t, e)
	now := time.Now()
	for _, q := range []string{
		`resets(litellm_proxy_total_requests_metric_total[1h]) > 0`,
		`resets(litellm_proxy_failed_requests_metric_total[1h]) > 0`,
	} {
		r, err := query(t, e.receiver, q, now)
		if err != nil {
			t.Fatal(err)
		}
		if len(r) != 0 {
			t.Errorf("%s: %d series show a reset (e.g. %v)", q, len(r), r[0].Metric)
		}
	}
	// The receiver rejected nothing.
	if v := metricValue(t, e.receiver, "prometheus_tsdb_out_of_order_samples_total"); v != 0 {
		t.Errorf("receiver prometheus_tsdb_out_of_order_samples_total = %v, want 0", v)
	}
	for _, code := range []string{`code="4`, `code="5`} {
		if v := metricValue(t, e.receiver, "prometheus_http_requests_total", `handler="/api/v1/write"`, code); v != 0 {
			t.Errorf("receiver answered %v remote-write requests with %s..", v, code[6:])
		}
	}
	merged := metricValue(t, e.rwfix, "rwfix_merged_samples_total")
	outputs := metricValue(t, e.rwfix, "rwfix_merge_state_series")
	sources := metricValue(t, e.rwfix, "rwfix_merge_state_sources")
	t.Logf("rwfix: %v collisions seen (this process), %v source samples merged, %v merged samples emitted, state %v outputs / %v sources",
		metricValue(t, e.rwfix, "rwfix_collisions_total"), merged, metricValue(t, e.rwfix, "rwfix_merge_emitted_samples_total"), outputs, sources)
	// Some outputs have two sources (None and 500): the collisions were real.
	if merged == 0 || sources <= outputs {
		t.Errorf("want merged samples > 0 and more sources than outputs in the merge state, got %v, %v sources, %v outputs", merged, sources, outputs)
	}
}

func testE2ECollision(t *testing.T, rw2 bool) {
	if testing.Short() {
		t.Skip("end-to-end test with real Prometheus; skipped with -short")
	}
	e := startE2E(t, senderOpts{rw2: rw2, shards: collisionShards}, true, "--config.file=testdata/config/e2e.yml")
	e.runAndFreeze(t, 8*time.Second)
	assertCounterSafe(t, e)
}

// TestE2ECollisionRW1: Prometheus 2.42 (RW 1.0), four shards.
func TestE2ECollisionRW1(t *testing.T) { testE2ECollision(t, false) }

// TestE2ECollisionRW2: Prometheus 3.x (RW 2.0), four shards.
func TestE2ECollisionRW2(t *testing.T) { testE2ECollision(t, true) }

// TestE2ECollisionRestart restarts rwfix mid-run under a real sender: the
// sender retries while rwfix is down, and afterwards no counter shows a fake
// reset or loses a count. Once with the warm-up alone, once with a state file.
func TestE2ECollisionRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with real Prometheus; skipped with -short")
	}
	for _, tc := range []struct {
		name string
		args func(t *testing.T) []string
	}{
		{"warmup", func(*testing.T) []string { return []string{"--config.file=testdata/config/e2e.yml"} }},
		{"state-file", func(t *testing.T) []string {
			path := t.TempDir() + "/rwfix.yml"
			writeFile(t, path, "collision:\n  warmup: 3s\n  state_file: "+t.TempDir()+"/merge-state.json\n")
			return []string{"--config.file=" + path}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startE2E(t, senderOpts{shards: collisionShards}, true, tc.args(t)...)
			waitFor(t, "LiteLLM series in the receiver", 60*time.Second, func() (bool, error) {
				r, err := query(t, e.receiver, `litellm_proxy_total_requests_metric_total`, time.Time{})
				return err == nil && len(r) > 0, err
			})
			time.Sleep(4 * time.Second)
			e.rwfixP.stop(t)
			if e.rwfixP.err != nil {
				t.Fatalf("rwfix exit after SIGTERM: %v", e.rwfixP.err)
			}
			time.Sleep(3 * time.Second) // the sender retries against a closed port
			e.rwfix, e.rwfixP = startRwfixAt(t, e.rwfixPort, e.rwfixArgs...)
			frozenAt := e.runAndFreeze(t, 6*time.Second)
			assertCounterSafe(t, e)
			assertNoSampleMissing(t, e, frozenAt)
		})
	}
}

// TestE2ECollisionNaiveBaseline measures the trap that rwfix avoids: the
// sender repairs with its own write_relabel_configs (what vmagent, Alloy and
// metric_relabel_configs do), straight to the receiver. It asserts that the
// naive repair does lose or corrupt data here, and logs the figures the
// README quotes.
func TestE2ECollisionNaiveBaseline(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with real Prometheus; skipped with -short")
	}
	recvBin := prometheus3(t)
	senderBin := prometheus2(t)
	exp := newFakeLiteLLM(t, true)
	receiver, _ := startPrometheus(t, "receiver", recvBin, receiverConfig, "--web.enable-remote-write-receiver")
	naive := `      - source_labels: [__name__, status_code]
        regex: 'litellm_proxy_total_requests_metric_(total|created);None'
        target_label: status_code
        replacement: '500'
      - source_labels: [__name__, exception_status]
        regex: 'litellm_proxy_failed_requests_metric_(total|created);None'
        target_label: exception_status
        replacement: '500'
`
	sender, _ := startPrometheus(t, "sender", senderBin, senderConfig(exp.Addr, receiver+"/api/v1/write",
		senderOpts{shards: collisionShards, writeRelabel: naive}))
	waitFor(t, "LiteLLM series in the receiver", 60*time.Second, func() (bool, error) {
		r, err := query(t, receiver, `litellm_proxy_total_requests_metric_total`, time.Time{})
		return err == nil && len(r) > 0, err
	})
	time.Sleep(8 * time.Second)
	exp.freeze()
	waitFor(t, "three scrapes after the freeze", 30*time.Second, func() (bool, error) { return exp.scrapesSinceFreeze() >= 3, nil })
	time.Sleep(4 * time.Second) // let the sender's queue drain
	now := time.Now()
	truth, _ := exp.truth()
	total, _ := scalarQuery(t, receiver, `sum(litellm_proxy_total_requests_metric_total{status_code=~"[45].."})`, now)
	failed, _ := scalarQuery(t, receiver, `sum(litellm_proxy_failed_requests_metric_total)`, now)
	resets, _ := scalarQuery(t, receiver, `sum(resets(litellm_proxy_total_requests_metric_total[1h]))`, now)
	lost := metricValue(t, sender, "prometheus_remote_storage_samples_failed_total")
	rejected := metricValue(t, receiver, "prometheus_http_requests_total", `handler="/api/v1/write"`, `code="400"`)
	fig := fmt.Sprintf("naive write_relabel_configs: sum(total{[45]..}) = %v, sum(failed) = %v, truth = %v, resets() = %v, sender failed samples = %v, receiver 400s = %v",
		total, failed, truth, resets, lost, rejected)
	t.Log(fig)
	if total == truth && failed == truth && lost == 0 && rejected == 0 && resets == 0 {
		t.Errorf("the naive repair lost nothing in this run; the trap did not show (%s)", fig)
	}
}
