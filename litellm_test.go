package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
)

// fakeLiteLLM serves a /metrics page shaped like LiteLLM's proxy: counters
// from prometheus_client (with _total and _created samples) whose failed
// requests without an HTTP code carry status_code="None" and
// exception_status="None". Its counters grow by a fixed step on every scrape
// until frozen, so the test knows the truth at any scrape.
type fakeLiteLLM struct {
	mu sync.Mutex
	// collide puts the "None" failures on the same key (user, model) as
	// genuine 500 failures, so that the repair lands on an existing series.
	collide bool
	frozen  bool
	scrapes int // scrapes served since the last freeze (or start)
	step    int
	total   map[string]float64 // label string -> value
	failed  map[string]float64
	// deployment counters with exception_status, as LiteLLM's router writes
	// them: failure responses and successful fallbacks, None and genuine 500
	deployFail, fallbacks map[string]float64
	created               map[string]float64
	gauge                 map[string]float64 // disappears after a few steps: a stale marker
	// restarts counts restart calls; quietNone, the steps after a restart
	// during which no request fails without a code (the None series are
	// absent, as LiteLLM's series are until first incremented).
	restarts, quietNone int
	// bornFrom is the step of the start or the last restart: the late keys'
	// series are born counting from it.
	bornFrom int
	srv      *http.Server
	URL      string
	Addr     string
}

type llmKey struct{ user, model string }

var llmKeys = []llmKey{
	{"alice", "gpt-4o"}, {"alice", "claude-3-5-sonnet"},
	{"bob", "gpt-4o"}, {"bob", "claude-3-5-sonnet"},
}

// llmBirths are keys whose None and 500 series are born mid-run, at
// different scrapes (as every first error of a new key, user or model starts
// a LiteLLM series), counted in steps since the start or the last restart.
var llmBirths = []struct {
	key        llmKey
	five, none int
}{
	{llmKey{"carol", "gpt-4o"}, 3, 6},          // the 500 first
	{llmKey{"dave", "gpt-4o-mini"}, 5, 2},      // the None first
	{llmKey{"erin", "claude-3-5-haiku"}, 4, 4}, // both at one scrape, after the first
}

func (k llmKey) labels() string {
	h := sha256.Sum256([]byte("sk-" + k.user))
	return fmt.Sprintf(`api_key_alias="%s-key",end_user="None",hashed_api_key="%s",requested_model="%s",team="team-%s",team_alias="%s-team",user="%s"`,
		k.user, hex.EncodeToString(h[:]), k.model, k.user, k.user, k.user)
}

func newFakeLiteLLM(t *testing.T, collide bool) *fakeLiteLLM {
	t.Helper()
	f := &fakeLiteLLM{collide: collide, total: map[string]float64{}, failed: map[string]float64{},
		deployFail: map[string]float64{}, fallbacks: map[string]float64{},
		created: map[string]float64{}, gauge: map[string]float64{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.Addr = l.Addr().String()
	f.URL = "http://" + f.Addr
	f.srv = &http.Server{Handler: http.HandlerFunc(f.serve)}
	go func() { _ = f.srv.Serve(l) }()
	t.Cleanup(func() { _ = f.srv.Close() })
	return f
}

func (f *fakeLiteLLM) inc(m map[string]float64, lbls string, by float64) {
	if _, ok := m[lbls]; !ok {
		f.created[lbls] = 1.7e9 + 1000*float64(f.restarts) + float64(len(f.created))
	}
	m[lbls] += by
}

// advance is one step of traffic: successes, genuine 500s, 429s, and failures
// without an HTTP code (LiteLLM's "None").
func (f *fakeLiteLLM) advance() {
	f.step++
	for i, k := range llmKeys {
		base := k.labels()
		f.inc(f.total, base+`,status_code="200"`, 3)
		if i%2 == 0 {
			f.inc(f.total, base+`,status_code="500"`, 1)
			f.inc(f.failed, base+`,exception_class="InternalServerError",exception_status="500"`, 1)
		}
		if (i%2 == 1 || f.collide) && f.quietNone == 0 {
			f.inc(f.total, base+`,status_code="None"`, 2)
			f.inc(f.failed, base+`,exception_class="Timeout",exception_status="None"`, 2)
		}
		if i == 0 && f.step%2 == 0 {
			f.inc(f.total, base+`,status_code="429"`, 1)
			f.inc(f.failed, base+`,exception_class="RateLimitError",exception_status="429"`, 1)
		}
	}
	if f.collide {
		rel := f.step - f.bornFrom
		for _, b := range llmBirths {
			base := b.key.labels()
			if rel >= b.five {
				f.inc(f.total, base+`,status_code="500"`, 1)
				f.inc(f.failed, base+`,exception_class="InternalServerError",exception_status="500"`, 1)
			}
			if rel >= b.none && f.quietNone == 0 {
				f.inc(f.total, base+`,status_code="None"`, 2)
				f.inc(f.failed, base+`,exception_class="Timeout",exception_status="None"`, 2)
			}
		}
	}
	for _, model := range []string{"gpt-4o", "claude-3-5-sonnet"} {
		base := fmt.Sprintf(`api_base="https://llm.example",api_provider="openai",exception_class="APIError",litellm_model_name="%s",model_id="None",requested_model="%s"`, model, model)
		f.inc(f.deployFail, base+`,exception_status="500"`, 1)
		if f.collide && f.quietNone == 0 {
			f.inc(f.deployFail, base+`,exception_status="None"`, 1)
		}
		fb := fmt.Sprintf(`exception_class="APIError",fallback_model="gpt-4o-mini",requested_model="%s",team="None"`, model)
		if f.step%2 == 0 && f.quietNone == 0 {
			f.inc(f.fallbacks, fb+`,exception_status="None"`, 1)
		}
		if f.step%3 == 0 {
			f.inc(f.fallbacks, fb+`,exception_status="500"`, 1)
		}
	}
	if f.quietNone > 0 {
		f.quietNone--
	}
	if f.step <= 5 {
		f.gauge[`team="team-alice"`] = 100 - float64(f.step)
	} else {
		delete(f.gauge, `team="team-alice"`)
	}
}

func (f *fakeLiteLLM) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/metrics" {
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.frozen {
		f.advance()
	}
	f.scrapes++
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	var b strings.Builder
	family := func(name, help string, m map[string]float64) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s counter\n", name, help, name)
		for _, l := range sortedKeys(m) {
			fmt.Fprintf(&b, "%s_total{%s} %v\n", name, l, m[l])
		}
		for _, l := range sortedKeys(m) {
			fmt.Fprintf(&b, "%s_created{%s} %v\n", name, l, f.created[l])
		}
	}
	family("litellm_proxy_total_requests_metric", "Total number of requests made to the proxy server - track number of client side requests", f.total)
	family("litellm_proxy_failed_requests_metric", "Total number of failed responses from proxy - the client did not get a success response from litellm proxy", f.failed)
	family("litellm_deployment_failure_responses", "LLM Deployment Analytics - Total number of failed LLM API calls for a specific LLM deployment", f.deployFail)
	family("litellm_deployment_successful_fallbacks", "LLM Deployment Analytics - Number of successful fallback requests from primary model -> fallback model", f.fallbacks)
	b.WriteString("# HELP litellm_remaining_team_budget_metric Remaining Budget for Team\n# TYPE litellm_remaining_team_budget_metric gauge\n")
	for _, l := range sortedKeys(f.gauge) {
		fmt.Fprintf(&b, "litellm_remaining_team_budget_metric{%s} %v\n", l, f.gauge[l])
	}
	_, _ = w.Write([]byte(b.String()))
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// restart is a LiteLLM restart: every counter starts again from zero, and a
// series exists again only once incremented (the None ones after 3 steps).
func (f *fakeLiteLLM) restart() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.restarts++
	f.bornFrom = f.step
	f.total, f.failed, f.created = map[string]float64{}, map[string]float64{}, map[string]float64{}
	f.deployFail, f.fallbacks = map[string]float64{}, map[string]float64{}
	f.quietNone = 3
}

// freeze stops the counters; the exporter keeps serving the same values.
func (f *fakeLiteLLM) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frozen = true
	f.scrapes = 0
}

func (f *fakeLiteLLM) scrapesSinceFreeze() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.scrapes
}

// deployTruth returns the deployment failures and successful fallbacks a
// fixed LiteLLM would count as 500s (all of them: None is a 500).
func (f *fakeLiteLLM) deployTruth() (failures, fallbacks float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, v := range f.deployFail {
		failures += v
	}
	for _, v := range f.fallbacks {
		fallbacks += v
	}
	return failures, fallbacks
}

// truth returns what a fixed LiteLLM would report: the sum of the total
// counter over error codes (None counted as the 500 it should be) and the sum
// of the failed counter.
func (f *fakeLiteLLM) truth() (totalErrors, failed float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for l, v := range f.total {
		if !strings.Contains(l, `status_code="200"`) {
			totalErrors += v
		}
	}
	for _, v := range f.failed {
		failed += v
	}
	return totalErrors, failed
}
