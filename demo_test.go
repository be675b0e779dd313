package main

import (
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"
)

var demo = flag.Bool("demo", false, "print the demo table (deploy/demo/run.sh)")

// TestDemo is the demo of deploy/demo/run.sh, and a test: before rwfix the
// LiteLLM aggregates disagree and "None" series exist; after, they agree.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with real Prometheus; skipped with -short")
	}
	e := startE2E(t, senderOpts{rw2: true, shards: collisionShards}, true)
	e.runAndFreeze(t, 8*time.Second)
	now := time.Now()
	queries := []string{
		`sum(litellm_proxy_total_requests_metric_total{status_code=~"[45].."})`,
		`sum(litellm_proxy_failed_requests_metric_total)`,
		`count(litellm_proxy_total_requests_metric_total{status_code="None"}) or vector(0)`,
		`sum by (status_code) (litellm_proxy_total_requests_metric_total{status_code!="200"})`,
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-90s | %-28s | %s\n", "query", "before rwfix (sender)", "after rwfix (receiver)")
	fmt.Fprintf(&b, "%s\n", strings.Repeat("-", 150))
	results := map[string][2]string{}
	for _, q := range queries {
		var cells [2]string
		for i, base := range []string{e.sender, e.receiver} {
			r, err := query(t, base, q, now)
			if err != nil {
				t.Fatal(err)
			}
			var parts []string
			for _, s := range r {
				v := fmt.Sprint(s.Value[1])
				if code, ok := s.Metric["status_code"]; ok {
					v = code + "=" + v
				}
				parts = append(parts, v)
			}
			cells[i] = strings.Join(parts, " ")
		}
		results[q] = cells
		fmt.Fprintf(&b, "%-90s | %-28s | %s\n", q, cells[0], cells[1])
	}
	truth, _ := e.exporter.truth()
	fmt.Fprintf(&b, "\nexporter truth (what a fixed LiteLLM counts as errors): %v\n", truth)
	if *demo {
		fmt.Println(b.String())
	} else {
		t.Log(b.String())
	}
	total, failed, none := results[queries[0]], results[queries[1]], results[queries[2]]
	if total[0] == failed[0] || none[0] == "0" {
		t.Errorf("before rwfix the sums should differ and None series exist: %v %v %v", total, failed, none)
	}
	if total[1] != failed[1] || none[1] != "0" || total[1] != fmt.Sprint(truth) {
		t.Errorf("after rwfix the sums should agree with the truth and no None remain: %v %v %v (truth %v)", total, failed, none, truth)
	}
}
