package main

// End-to-end tests of the collision trap with real Prometheus: the fake
// LiteLLM exporter has "None" and genuine "500" series with otherwise
// identical labels, and the sender is forced to use several shards and small
// batches, so that the two sources of one output travel in different,
// concurrent requests.

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"slices"
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
	// The receiver refused no batch of the sender's. After a crash, merged
	// samples that may already be written are re-sent in requests of their
	// own; a repeat older than the receiver's newest sample is out of order
	// (400), and such a request is split until each sample is settled: those
	// requests are counted apart.
	retriesRefused := metricValue(t, e.rwfix, "rwfix_merge_retries_refused_total")
	retryRequestsRefused := metricValue(t, e.rwfix, "rwfix_merge_retry_requests_refused_total")
	if v := metricValue(t, e.receiver, "prometheus_http_requests_total", `handler="/api/v1/write"`, `code="4`); v != retryRequestsRefused {
		t.Errorf("receiver answered %v remote-write requests with 4xx, %v of them re-sent merged samples", v, retryRequestsRefused)
	}
	if v := metricValue(t, e.receiver, "prometheus_http_requests_total", `handler="/api/v1/write"`, `code="5`); v != 0 {
		t.Errorf("receiver answered %v remote-write requests with 5xx", v)
	}
	if v := metricValue(t, e.receiver, "prometheus_tsdb_out_of_order_samples_total"); v != 0 && retriesRefused == 0 {
		t.Errorf("receiver prometheus_tsdb_out_of_order_samples_total = %v, want 0", v)
	}
	merged := metricValue(t, e.rwfix, "rwfix_merged_samples_total")
	outputs := metricValue(t, e.rwfix, "rwfix_merge_state_series")
	sources := metricValue(t, e.rwfix, "rwfix_merge_state_sources")
	t.Logf("rwfix: %v collisions seen (this process), %v source samples merged, %v merged samples emitted, state %v outputs / %v sources",
		metricValue(t, e.rwfix, "rwfix_collisions_total"), merged, metricValue(t, e.rwfix, "rwfix_merge_emitted_samples_total"), outputs, sources)
	// The latency the merge adds to merged samples: none where every
	// possible source is known, collision.birth_wait (10 s) at births.
	if n := metricValue(t, e.rwfix, "rwfix_merge_hold_seconds_count"); n > 0 {
		t.Logf("merge hold: %v timestamps, mean %.2f s, %.0f%% within 10 ms, %.0f%% within 10 s",
			n, metricValue(t, e.rwfix, "rwfix_merge_hold_seconds_sum")/n,
			100*metricValue(t, e.rwfix, "rwfix_merge_hold_seconds_bucket", `le="0.01"`)/n,
			100*metricValue(t, e.rwfix, "rwfix_merge_hold_seconds_bucket", `le="10"`)/n)
	}
	// Some outputs have two sources (None and 500): the collisions were real.
	if merged == 0 || sources <= outputs {
		t.Errorf("want merged samples > 0 and more sources than outputs in the merge state, got %v, %v sources, %v outputs", merged, sources, outputs)
	}
}

func testE2ECollision(t *testing.T, rw2 bool) {
	if testing.Short() {
		t.Skip("end-to-end test with real Prometheus; skipped with -short")
	}
	// rwfix with its defaults: no configuration file.
	e := startE2E(t, senderOpts{rw2: rw2, shards: collisionShards}, true)
	frozenAt := e.runAndFreeze(t, 8*time.Second)
	assertCounterSafe(t, e)
	assertMergeExact(t, e, frozenAt)
}

// TestE2ECollisionRW1: Prometheus 2.42 (RW 1.0), four shards.
func TestE2ECollisionRW1(t *testing.T) { testE2ECollision(t, false) }

// TestE2ECollisionRW2: Prometheus 3.x (RW 2.0), four shards.
func TestE2ECollisionRW2(t *testing.T) { testE2ECollision(t, true) }

// TestE2ECollisionRestart stops rwfix mid-run under a real sender — SIGTERM,
// SIGKILL (at a moment unrelated to any periodic write), and SIGKILL with the
// data directory lost — and restarts it. Afterwards: no fake reset, no
// rejected sample, every merged sample the exact sum of its sources.
func TestE2ECollisionRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with real Prometheus; skipped with -short")
	}
	for _, tc := range []struct {
		name     string
		kill     bool
		loseData bool
		rw2      bool
	}{
		{"sigterm", false, false, false},
		{"sigkill", true, false, false},
		{"sigkill-rw2", true, false, true},
		{"sigkill-data-lost", true, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startE2E(t, senderOpts{shards: collisionShards, rw2: tc.rw2}, true)
			waitFor(t, "LiteLLM series in the receiver", 60*time.Second, func() (bool, error) {
				r, err := query(t, e.receiver, `litellm_proxy_total_requests_metric_total`, time.Time{})
				return err == nil && len(r) > 0, err
			})
			time.Sleep(time.Duration(2500+rand.IntN(3000)) * time.Millisecond)
			if tc.kill {
				e.rwfixP.kill(t)
			} else {
				e.rwfixP.stop(t)
				if e.rwfixP.err != nil {
					t.Fatalf("rwfix exit after SIGTERM: %v", e.rwfixP.err)
				}
			}
			if tc.loseData {
				if err := os.RemoveAll(e.dataDir); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(3 * time.Second) // the sender retries against a closed port
			e.rwfix, e.rwfixP = startRwfixAt(t, e.rwfixPort, e.rwfixArgs...)
			frozenAt := e.runAndFreeze(t, 6*time.Second)
			assertCounterSafe(t, e)
			if tc.loseData {
				// Without its state rwfix learns the outputs again: held
				// samples of the lost state may be missing (a gap), but
				// every sample sent is exact.
				assertMergeValuesExact(t, e, frozenAt)
			} else {
				assertMergeExact(t, e, frozenAt)
			}
			assertNoSampleMissing(t, e, frozenAt)
		})
	}
}

// TestE2ECollisionLiteLLMRestart: the exporter restarts mid-run — every
// counter from zero, the None series absent for a few scrapes. Each merged
// output resets exactly once, where the sum of its sources drops, and is
// afterwards the sum since the restart.
func TestE2ECollisionLiteLLMRestart(t *testing.T) {
	for _, rw2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "rw1", true: "rw2"}[rw2], func(t *testing.T) { testE2ECollisionLiteLLMRestart(t, rw2) })
	}
}

func testE2ECollisionLiteLLMRestart(t *testing.T, rw2 bool) {
	if testing.Short() {
		t.Skip("end-to-end test with real Prometheus; skipped with -short")
	}
	e := startE2E(t, senderOpts{shards: collisionShards, rw2: rw2}, true)
	waitFor(t, "LiteLLM series in the receiver", 60*time.Second, func() (bool, error) {
		r, err := query(t, e.receiver, `litellm_proxy_total_requests_metric_total`, time.Time{})
		return err == nil && len(r) > 0, err
	})
	time.Sleep(5 * time.Second)
	e.exporter.restart()
	frozenAt := e.runAndFreeze(t, 8*time.Second)
	assertRepaired(t, e) // the sums match the truth since the restart
	assertMergeExact(t, e, frozenAt)
	want, got := mergedSamples(t, e, frozenAt)
	drops := func(m map[string]string) int {
		ts := slices.Sorted(maps.Keys(m))
		n, prev := 0, math.Inf(-1)
		slices.SortFunc(ts, func(a, b string) int {
			var x, y float64
			_, _ = fmt.Sscan(a, &x)
			_, _ = fmt.Sscan(b, &y)
			return cmp.Compare(x, y)
		})
		for _, k := range ts {
			var v float64
			_, _ = fmt.Sscan(m[k], &v)
			if v < prev {
				n++
			}
			prev = v
		}
		return n
	}
	reset := 0
	for k, w := range want {
		// An output whose sources were all born after the restart has no
		// drop; every other one drops exactly once, where its sources' sum
		// does.
		dw, dg := drops(w), drops(got[k])
		if dw > 1 || dg != dw {
			t.Errorf("%s: %d drops in the sources' sum, %d in the merged output; want the same, at most 1", k, dw, dg)
		}
		reset += dg
	}
	if reset < len(want)/2 {
		t.Errorf("only %d of %d merged outputs reset at the LiteLLM restart", reset, len(want))
	}
	if v := metricValue(t, e.sender, "prometheus_remote_storage_samples_failed_total"); v != 0 {
		t.Errorf("sender failed samples: %v", v)
	}
	t.Logf("LiteLLM restart: %d merged outputs, %d with exactly one reset (the others born after it)", len(want), reset)
}

// mergedSamples reads, over the whole run, the LiteLLM counters that the
// preset repairs: from the sender's own TSDB the sources, summed per output
// and timestamp (every source of one output is scraped at one timestamp);
// from the receiver the outputs.
func mergedSamples(t *testing.T, e *e2eEnv, at time.Time) (want, got map[string]map[string]string) {
	t.Helper()
	return mergedSamplesFrom(t, e.sender, e.receiver, at)
}

// mergedSamplesFrom: the sources as stored by sources (a TSDB that got them
// unrepaired), the outputs as stored by outputs.
func mergedSamplesFrom(t *testing.T, sources, outputs string, at time.Time) (want, got map[string]map[string]string) {
	t.Helper()
	read := func(base string, sum bool) map[string]map[string]string {
		out := map[string]map[string]string{}
		vals := map[string]map[string]float64{}
		for _, name := range []string{"litellm_proxy_total_requests_metric_total", "litellm_proxy_failed_requests_metric_total"} {
			r, err := query(t, base, name+"[1h]", at)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range r {
				m := maps.Clone(s.Metric)
				for _, l := range []string{"status_code", "exception_status"} {
					if m[l] == "None" {
						m[l] = "500"
					}
				}
				if m["status_code"] != "500" && m["exception_status"] != "500" {
					continue
				}
				k := fmt.Sprint(m)
				if vals[k] == nil {
					vals[k] = map[string]float64{}
				}
				for _, v := range s.Values {
					ts := fmt.Sprint(v[0])
					var f float64
					_, _ = fmt.Sscan(v[1].(string), &f)
					if sum {
						vals[k][ts] += f
					} else {
						vals[k][ts] = f
					}
				}
			}
		}
		for k, m := range vals {
			out[k] = map[string]string{}
			for ts, v := range m {
				out[k][ts] = fmt.Sprint(v)
			}
		}
		return out
	}
	return read(sources, true), read(outputs, false)
}

// assertMergeExact: per merged series, the receiver holds a sample at every
// timestamp at which the sender has one of its sources, and each is the sum
// of the sources there.
func assertMergeExact(t *testing.T, e *e2eEnv, at time.Time) {
	t.Helper()
	assertMergeExactFrom(t, e.sender, e.receiver, at)
}

func assertMergeExactFrom(t *testing.T, sources, outputs string, at time.Time) {
	t.Helper()
	want, got := mergedSamplesFrom(t, sources, outputs, at)
	compared, exact := 0, 0
	for k, w := range want {
		g := got[k]
		for ts, v := range w {
			compared++
			if g[ts] == v {
				exact++
			} else if compared-exact <= 5 {
				t.Errorf("%s @%s: receiver %q, sum of the sources %s", k, ts, g[ts], v)
			}
		}
		if len(g) != len(w) {
			t.Errorf("%s: receiver has %d samples, the sender %d source timestamps", k, len(g), len(w))
		}
	}
	t.Logf("merged outputs: %d series, %d of %d samples exact", len(want), exact, compared)
	if compared == 0 {
		t.Fatal("no merged output to compare")
	}
}

// assertMergeValuesExact: every merged sample the receiver holds is the sum
// of its sources at its timestamp (samples may be missing).
func assertMergeValuesExact(t *testing.T, e *e2eEnv, at time.Time) {
	t.Helper()
	want, got := mergedSamples(t, e, at)
	compared, missing := 0, 0
	for k, g := range got {
		for ts, v := range g {
			compared++
			if want[k][ts] != v {
				t.Errorf("%s @%s: receiver %s, sum of the sources %q", k, ts, v, want[k][ts])
			}
		}
		missing += len(want[k]) - len(g)
	}
	t.Logf("merged outputs: %d series, %d samples, all exact; %d source timestamps without an output sample", len(got), compared, missing)
}

// TestE2ECollisionNaiveBaseline measures the trap that rwfix avoids: the
// sender repairs with its own write_relabel_configs (what vmagent, Alloy and
// metric_relabel_configs do), straight to the receiver. It asserts that the
// naive repair does lose or corrupt data here, and logs the figures the
// docs/collisions.md quotes.
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
