package main

// End-to-end against a second real TSDB: Debian's VictoriaMetrics as the
// upstream, fed by real Prometheus senders through rwfix.

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func victoriaMetrics(t *testing.T) string {
	return needBinary(t, "VictoriaMetrics (apt-get install victoria-metrics)", os.Getenv("RWFIX_VICTORIA_METRICS"), "/usr/bin/victoria-metrics")
}

// startVictoriaMetrics runs VictoriaMetrics on a free port. Queries see
// samples at once (no latency offset, no cache), as the test needs.
func startVictoriaMetrics(t *testing.T) string {
	t.Helper()
	bin := victoriaMetrics(t)
	port := freePort(t)
	p := startProc(t, "victoria-metrics", bin,
		fmt.Sprintf("-httpListenAddr=127.0.0.1:%d", port),
		"-storageDataPath="+filepath.Join(t.TempDir(), "vm"),
		"-search.latencyOffset=0s", "-search.disableCache", "-retentionPeriod=100y")
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitFor(t, "VictoriaMetrics to be healthy", 60*time.Second, func() (bool, error) {
		select {
		case <-p.done:
			t.Fatalf("victoria-metrics exited: %v\n%s", p.err, tail(p.logText(), 3<<10))
		default:
		}
		resp, err := http.Get(base + "/health")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	return base
}

func TestE2EVictoriaMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with real Prometheus; skipped with -short")
	}
	for _, rw2 := range []bool{false, true} {
		name := "RW1"
		if rw2 {
			name = "RW2"
		}
		t.Run(name, func(t *testing.T) {
			senderBin := prometheus2(t)
			if rw2 {
				senderBin = prometheus3(t)
			}
			vm := startVictoriaMetrics(t)
			e := &e2eEnv{exporter: newFakeLiteLLM(t, true), receiver: vm}
			e.rwfix, e.rwfixP = startRwfix(t, "--upstream.url="+vm+"/api/v1/write")
			e.sender, e.senderP = startPrometheus(t, "sender", senderBin,
				senderConfig(e.exporter.Addr, e.rwfix+"/api/v1/write", senderOpts{rw2: rw2, shards: collisionShards}))
			e.runAndFreeze(t, 8*time.Second)
			assertRepaired(t, e)
			if rw2 {
				if n := metricValue(t, e.rwfix, "rwfix_upstream_protocol_fallbacks_total"); n != 1 {
					t.Errorf("rwfix_upstream_protocol_fallbacks_total = %v: VictoriaMetrics 1.79 speaks RW 1.0 only, want one switch", n)
				}
			}
		})
	}
}
