package ui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"go.yaml.in/yaml/v2"

	"github.com/rwfix/rwfix/relabel"
	"github.com/rwfix/rwfix/remotewrite"
	"github.com/rwfix/rwfix/remotewrite/rwtest"
	"github.com/rwfix/rwfix/remotewrite/wire"
)

// relay is the relay as main wires it: the real handler, the real pipeline
// and metrics in one registry, an upstream that records, and the page.
type relay struct {
	write  http.Handler
	page   *httptest.Server
	up     *rwtest.RecordingUpstream
	reg    *prometheus.Registry
	secret string
}

func newRelay(t *testing.T, limits Limits, upOpts ...rwtest.UpstreamOption) *relay {
	t.Helper()
	reg := prometheus.NewRegistry()
	rec := NewRecorder()
	cfg := relabel.DefaultConfig()
	p, err := relabel.New(cfg, relabel.NewMetrics(reg), relabel.NewMerger(cfg.Collision, reg))
	if err != nil {
		t.Fatal(err)
	}
	up := rwtest.NewRecordingUpstream(t, upOpts...)
	var uc remotewrite.UpstreamConfig
	secret := "s3cr3t-password"
	if err := yaml.UnmarshalStrict([]byte("name: tsdb\nurl: "+up.URL+"\nbasic_auth: {username: u, password: "+secret+"}\n"), &uc); err != nil {
		t.Fatal(err)
	}
	if err := uc.Validate(); err != nil {
		t.Fatal(err)
	}
	u, err := remotewrite.NewUpstream(uc)
	if err != nil {
		t.Fatal(err)
	}
	h := remotewrite.NewHandler(p, []*remotewrite.Upstream{u}, remotewrite.WithMetrics(remotewrite.NewMetrics(reg)),
		remotewrite.WithObserver(rec, MaxChangesPerRequest))
	mux := http.NewServeMux()
	New(Options{
		Gatherer: reg, Recorder: rec, Ready: func() bool { return true },
		Reload: func() ReloadStatus {
			return ReloadStatus{File: "rwfix.yml", Time: time.Now(), Upstreams: []Upstream{{Name: "tsdb", URL: uc.URL.Redacted()}}, Repair: cfg}
		},
		Config: func() ([]byte, error) {
			return yaml.Marshal(map[string]any{"upstreams": []remotewrite.UpstreamConfig{uc}})
		},
		ParseRepair: func(b []byte) (relabel.Config, error) {
			var c relabel.Config
			err := yaml.UnmarshalStrict(b, &c)
			return c, err
		},
		Limits: limits,
	}).Register(mux)
	page := httptest.NewServer(mux)
	t.Cleanup(page.Close)
	return &relay{write: h, page: page, up: up, reg: reg, secret: secret}
}

// send posts one RW 1.0 request through the handler.
func (r *relay) send(t *testing.T, body []byte) int {
	t.Helper()
	return r.sendProto(t, rwtest.ProtoV1, body)
}

func (r *relay) sendProto(t *testing.T, proto remoteapi.WriteMessageType, body []byte) int {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
	req.Header.Set("Content-Type", wire.ContentType(proto))
	req.Header.Set("Content-Encoding", "snappy")
	w := httptest.NewRecorder()
	r.write.ServeHTTP(w, req)
	return w.Code
}

func litellmRequest(t *testing.T, ts int64, none, genuine float64) []byte {
	t.Helper()
	mk := func(code string, v float64) prompb.TimeSeries {
		return prompb.TimeSeries{
			Labels:  prompb.FromLabels(labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_total", "status_code", code, "user", "a"), nil),
			Samples: []prompb.Sample{{Value: v, Timestamp: ts}},
		}
	}
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{mk("None", none), mk("500", genuine),
		{Labels: prompb.FromLabels(labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_total", "status_code", "None", "user", "b"), nil),
			Samples: []prompb.Sample{{Value: 7, Timestamp: ts}}},
		{Labels: prompb.FromLabels(labels.FromStrings("__name__", "up", "job", "litellm"), nil),
			Samples: []prompb.Sample{{Value: 1, Timestamp: ts}}}}}
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return s2.EncodeSnappy(nil, raw)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestStatusReflectsTraffic(t *testing.T) {
	r := newRelay(t, Limits{})
	now := time.Now().UnixMilli()
	for i := range 3 {
		if code := r.send(t, litellmRequest(t, now+int64(i)*15000, float64(1+i), 10)); code/100 != 2 {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	if code := r.send(t, []byte("not snappy")); code != http.StatusBadRequest {
		t.Fatalf("corrupt request answered %d", code)
	}
	if r.up.Len() == 0 {
		t.Fatal("the upstream got nothing")
	}
	code, body := get(t, r.page.URL+"/")
	if code != http.StatusOK {
		t.Fatalf("GET /: %d %s", code, body)
	}
	for _, want := range []string{
		"<td>tsdb</td>", r.up.URL, // the upstream, its URL
		"RW 1.0 (as received)", "204", // protocol and last answer
		"<td>litellm</td><td class=\"num\">6</td>", // two None series, three times each
		"<td>corrupt</td><td class=\"num\">1</td>", "snappy",
		"<span class=\"ok\">ready</span>", "rwfix.yml",
		`litellm_proxy_total_requests_metric_total{status_code=&#34;None&#34;, user=&#34;a&#34;}`, // a merge source
		`href="/playground?series=litellm_proxy_total_requests_metric_total`,
		"<tr><th>Requests</th><td class=\"num\">4</td>", // the corrupt one counts too
		"held for the merge",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("GET / lacks %q", want)
		}
	}
	if !strings.Contains(body, "merged") {
		t.Error("GET / shows no merged example")
	}
	if strings.Contains(body, r.secret) {
		t.Error("GET / shows the upstream's password")
	}
	if t.Failed() {
		t.Log(body)
	}
}

func TestStatusShowsFallback(t *testing.T) {
	r := newRelay(t, Limits{}, rwtest.RejectRW2())
	bodies, _ := rwtest.Workload{Series: 20, BatchSize: 20, Rounds: 1}.RW2()
	if code := r.sendProto(t, rwtest.ProtoV2, bodies[0]); code/100 != 2 {
		t.Fatalf("RW 2.0 request: %d", code)
	}
	_, body := get(t, r.page.URL+"/")
	for _, want := range []string{"RW 1.0 (fallen back from 2.0)", "why: answered 415 to remote write 2.0", "204"} {
		if !strings.Contains(body, want) {
			t.Errorf("GET / lacks %q", want)
		}
	}
}

func TestConfigHidesSecrets(t *testing.T) {
	r := newRelay(t, Limits{})
	code, body := get(t, r.page.URL+"/config")
	if code != http.StatusOK {
		t.Fatalf("GET /config: %d", code)
	}
	if strings.Contains(body, r.secret) {
		t.Errorf("GET /config shows the password:\n%s", body)
	}
	if !strings.Contains(body, "&lt;secret&gt;") {
		t.Errorf("GET /config does not show <secret>:\n%s", body)
	}
}

type apiAnswer struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		Output []struct {
			Labels map[string]string `json:"labels"`
			Values [][2]any          `json:"values"`
		} `json:"output"`
		Series []struct {
			Labels map[string]string `json:"labels"`
			Output map[string]string `json:"output"`
			Action string            `json:"action"`
			Rules  []traceStep       `json:"rules"`
		} `json:"series"`
		Collisions []struct {
			Output map[string]string   `json:"output"`
			Inputs []map[string]string `json:"inputs"`
			Values [][2]any            `json:"values"`
			Merge  string              `json:"merge"`
		} `json:"collisions"`
		Test string `json:"test"`
	} `json:"data"`
}

func postRepair(t *testing.T, url string, body []byte) (int, apiAnswer, string) {
	t.Helper()
	resp, err := http.Post(url+"/api/v1/repair", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var a apiAnswer
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatalf("answer is not JSON: %v: %s", err, raw)
	}
	return resp.StatusCode, a, string(raw)
}

func repairBody(t *testing.T, series, config, interval string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]string{"series": series, "config": config, "interval": interval})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const collidingSeries = `litellm_proxy_total_requests_metric_total{status_code="None", user="a"} 1 2 3
litellm_proxy_total_requests_metric_total{status_code="500", user="a"} 10 10 11
litellm_proxy_total_requests_metric_total{status_code="None", user="b"} 0+1x2
other{x="y"} 1 _ stale
`

func TestRepairAPI(t *testing.T) {
	r := newRelay(t, Limits{})
	code, a, raw := postRepair(t, r.page.URL, repairBody(t, collidingSeries, "", "30s"))
	if code != http.StatusOK || a.Status != "success" {
		t.Fatalf("%d %s", code, raw)
	}
	d := a.Data
	actions := map[string]string{}
	for _, s := range d.Series {
		actions[s.Labels["status_code"]+s.Labels["user"]+s.Labels["x"]] = s.Action
	}
	want := map[string]string{"Nonea": "merged", "500a": "merged", "Noneb": "repaired", "y": "unchanged"}
	for k, v := range want {
		if actions[k] != v {
			t.Errorf("series %s: action %q, want %q (all: %v)", k, actions[k], v, actions)
		}
	}
	if len(d.Series[0].Rules) != 1 || d.Series[0].Rules[0].Rule != "litellm" ||
		d.Series[0].Rules[0].Changes[0] != (labelChange{Label: "status_code", From: "None", To: "500"}) {
		t.Errorf("rules of the None series: %+v", d.Series[0].Rules)
	}
	if len(d.Collisions) != 1 || len(d.Collisions[0].Inputs) != 2 || d.Collisions[0].Output["status_code"] != "500" {
		t.Fatalf("collisions: %+v", d.Collisions)
	}
	if got := d.Collisions[0].Values; len(got) != 3 || got[0][1] != "11" || got[1][1] != "12" || got[2][1] != "14" || got[1][0] != 30.0 {
		t.Errorf("merged values: %v, want 11 12 14 at 0, 30, 60 s", got)
	}
	if d.Collisions[0].Merge != "sum" {
		t.Errorf("a counter's collision merges by %q, want sum", d.Collisions[0].Merge)
	}
	// A _created collision: the earliest creation time, not the sum.
	created := `litellm_proxy_total_requests_metric_created{status_code="None", user="a"} 1700000100 1700000100
litellm_proxy_total_requests_metric_created{status_code="500", user="a"} 1700000050 1700000050
`
	code, ca, raw := postRepair(t, r.page.URL, repairBody(t, created, "", ""))
	if code != http.StatusOK || len(ca.Data.Collisions) != 1 || ca.Data.Collisions[0].Merge != "min" ||
		len(ca.Data.Collisions[0].Values) == 0 || ca.Data.Collisions[0].Values[0][1] != "1700000050" {
		t.Errorf("a _created collision: want merge min, value 1700000050: %d %s", code, raw)
	}
	if len(d.Output) != 3 {
		t.Errorf("output: %d series, want 3: %+v", len(d.Output), d.Output)
	}
	if !strings.Contains(d.Test, "values: 11 12 14") || !strings.Contains(d.Test, "interval: 30s") {
		t.Errorf("exported test:\n%s", d.Test)
	}
	// A drop rule of a pasted configuration.
	code, a, raw = postRepair(t, r.page.URL, repairBody(t, collidingSeries, "relabel_configs: [{source_labels: [x], regex: y, action: drop}]\n", ""))
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, raw)
	}
	last := a.Data.Series[3]
	if last.Action != "dropped" || last.Output != nil || len(last.Rules) != 1 || !last.Rules[0].Dropped {
		t.Errorf("dropped series: %+v", last)
	}
	// An exposition, pasted as is.
	expo := "# HELP litellm_proxy_total_requests_metric_total x\n# TYPE litellm_proxy_total_requests_metric_total counter\n" +
		"litellm_proxy_total_requests_metric_total{status_code=\"None\",user=\"a\"} 4\nlitellm_proxy_total_requests_metric_total{status_code=\"500\",user=\"a\"} 5\n"
	code, a, raw = postRepair(t, r.page.URL, repairBody(t, expo, "", ""))
	if code != http.StatusOK || len(a.Data.Output) != 1 || a.Data.Output[0].Values[0][1] != "9" {
		t.Errorf("exposition: %d %s", code, raw)
	}
	// keep_distinct: the marker label is the policy's step.
	code, a, raw = postRepair(t, r.page.URL, repairBody(t, collidingSeries, "collision: {policy: keep_distinct}", ""))
	if code != http.StatusOK || a.Data.Series[0].Action != "repaired" || len(a.Data.Series[0].Rules) != 2 ||
		a.Data.Series[0].Rules[1].Changes[0] != (labelChange{Label: "status_code_original", To: "None"}) || len(a.Data.Collisions) != 0 {
		t.Errorf("keep_distinct: %d %s", code, raw)
	}
	// A genuine 500 series alone is tracked by the merge, and unchanged.
	code, a, raw = postRepair(t, r.page.URL, repairBody(t, `litellm_proxy_total_requests_metric_total{status_code="500", user="z"} 1 2`, "", ""))
	if code != http.StatusOK || a.Data.Series[0].Action != "unchanged" || len(a.Data.Collisions) != 0 || a.Data.Output[0].Values[1][1] != "2" {
		t.Errorf("a genuine series alone: %d %s", code, raw)
	}
	// The live relay is untouched by a run.
	if r.up.Len() != 0 {
		t.Errorf("a playground run reached the live upstream (%d requests)", r.up.Len())
	}
}

func TestRepairAPIErrors(t *testing.T) {
	r := newRelay(t, Limits{MaxBodyBytes: 4096, MaxSeries: 3, MaxSteps: 5, MaxSamples: 12, MaxRuns: 1})
	for _, tc := range []struct {
		name, body string
		code       int
		want       string
	}{
		{"not JSON", "{", 400, "request body"},
		{"unknown field", `{"serie": "x 1"}`, 400, "unknown field"},
		{"interval not a string", `{"series": "x 1", "interval": 15}`, 400, `"interval" must be a string, not a number`},
		{"bad series", string(repairBody(t, "ok 1\nbad{ 1 2", "", "")), 400, "line 2"},
		{"no values", string(repairBody(t, "\n\nmetric{a=\"b\"}", "", "")), 400, "line 3"},
		{"repeated", string(repairBody(t, "a 1\na 2", "", "")), 400, "repeats line 1"},
		{"empty", string(repairBody(t, "", "", "")), 400, "no series"},
		{"bad config", string(repairBody(t, "a 1", "presets: [nope]", "")), 400, "config"},
		{"bad interval", string(repairBody(t, "a 1", "", "0s")), 400, "interval"},
		{"too many series", string(repairBody(t, "a 1\nb 1\nc 1\nd 1", "", "")), 400, "more than 3 series"},
		{"too many steps", string(repairBody(t, "a 0+1x100000000000", "", "")), 400, "more than 5 steps"},
		{"too many samples", string(repairBody(t, "a 1 2 3 4 5\nb 1 2 3 4 5\nc 1", "", "")), 400, "more than 12"},
		{"too large", string(repairBody(t, strings.Repeat("a 1\n", 2000), "", "")), 413, "exceeds the 4096 bytes limit"},
	} {
		code, a, raw := postRepair(t, r.page.URL, []byte(tc.body))
		if code != tc.code || a.Status != "error" || a.ErrorType != "bad_data" || !strings.Contains(a.Error, tc.want) {
			t.Errorf("%s: %d %s; want %d bad_data with %q", tc.name, code, raw, tc.code, tc.want)
		}
		if strings.Contains(a.Error, "Go struct") || strings.Contains(a.Error, "repairRequest") {
			t.Errorf("%s: a Go type in the error: %s", tc.name, a.Error)
		}
	}
	resp, err := http.Get(r.page.URL + "/api/v1/repair")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /api/v1/repair: %d", resp.StatusCode)
	}
}

func TestPlaygroundPage(t *testing.T) {
	r := newRelay(t, Limits{})
	code, body := get(t, r.page.URL+"/playground")
	if code != http.StatusOK || !strings.Contains(body, `<textarea id="config"`) || !strings.Contains(body, "- litellm") {
		t.Errorf("GET /playground: %d\n%s", code, body)
	}
	code, js := get(t, r.page.URL+"/static/playground.js")
	if code != http.StatusOK || !strings.Contains(js, "/api/v1/repair") {
		t.Errorf("GET /static/playground.js: %d", code)
	}
	// The page's scripts build nodes (textContent), never markup from
	// strings: nothing pasted or returned can become HTML. The browser test
	// (TestWebPageInBrowser) pastes markup and checks it stays text.
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"} {
		if strings.Contains(js, sink) {
			t.Errorf("playground.js uses %s", sink)
		}
	}
}

// prometheusLikeTraffic is what a Prometheus sender writes for a LiteLLM
// exporter over rounds scrapes 15 s apart, ending now: one TimeSeries per
// sample; users u0-u9 have a None and a genuine 500 series (they collide),
// n0-n4 a None series alone (a repair), g0-g4 a genuine 500 alone (nothing
// to do); every user a 200 series. The last two rounds go in one request, as
// a sender catching up sends them: each series twice in it.
func prometheusLikeTraffic(t *testing.T, rounds int) [][]byte {
	t.Helper()
	type series struct {
		ls   labels.Labels
		rate float64
	}
	var all []series
	add := func(user, code string, rate float64) {
		all = append(all, series{labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_total", "status_code", code, "user", user), rate})
	}
	for i := range 10 {
		add(fmt.Sprintf("u%d", i), "None", 1)
		add(fmt.Sprintf("u%d", i), "500", 2)
	}
	for i := range 5 {
		add(fmt.Sprintf("n%d", i), "None", 3)
		add(fmt.Sprintf("g%d", i), "500", 1)
	}
	for _, s := range all { // the range is the slice before the appends
		add(s.ls.Get("user"), "200", 5)
	}
	start := time.Now().Add(-time.Duration(rounds) * 15 * time.Second).UnixMilli()
	var bodies [][]byte
	req := &prompb.WriteRequest{}
	for r := range rounds {
		for _, s := range all {
			req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: prompb.FromLabels(s.ls, nil),
				Samples: []prompb.Sample{{Value: s.rate * float64(r+1), Timestamp: start + int64(r)*15000}}})
		}
		if r == rounds-2 {
			continue // caught up with the next round
		}
		raw, err := req.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, s2.EncodeSnappy(nil, raw))
		req = &prompb.WriteRequest{}
	}
	return bodies
}

// TestStatusExamples: after realistic traffic the status page lists what
// the rules changed — each change once, at most 20 rows, no untouched
// genuine 500 among them — and every playground link on it loads.
func TestStatusExamples(t *testing.T) {
	r := newRelay(t, Limits{})
	for i, b := range prometheusLikeTraffic(t, 8) {
		if code := r.send(t, b); code/100 != 2 {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	_, body := get(t, r.page.URL+"/")
	rowRE := regexp.MustCompile(`(?s)<tr class="example">\s*<td[^>]*>.*?</td><td class="action[^"]*">([^<]*)</td>\s*<td>(.*?)</td>\s*<td><code>(.*?)</code></td>.*?</tr>`)
	rows := rowRE.FindAllStringSubmatch(body, -1)
	if len(rows) < 10 || len(rows) > 20 {
		t.Errorf("%d example rows, want 10 to 20", len(rows))
	}
	seen := map[string]bool{}
	for _, row := range rows {
		action, input, output := html.UnescapeString(row[1]), html.UnescapeString(row[2]), html.UnescapeString(row[3])
		key := action + input[:strings.IndexByte(input+" ", ' ')] + output
		if seen[key] {
			t.Errorf("row shown twice: %s %s -> %s", action, input, output)
		}
		seen[key] = true
		if strings.Contains(action, "merge") && !strings.Contains(input, `status_code="None"`) {
			t.Errorf("a merge example without a None source: %s %s -> %s", action, input, output)
		}
		if strings.Contains(input, `user="g`) {
			t.Errorf("an untouched genuine 500 series listed: %s %s -> %s", action, input, output)
		}
	}
	// Every link loads in the playground: its input as the page's script
	// sends it, with the running configuration.
	links := regexp.MustCompile(`href="(/playground\?[^"]*)"`).FindAllStringSubmatch(body, -1)
	if len(links) < 10 {
		t.Errorf("%d playground links, want at least 10", len(links))
	}
	loaded := 0
	for _, l := range links {
		u, err := url.Parse(html.UnescapeString(l[1]))
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		code, a, raw := postRepair(t, r.page.URL, repairBody(t, q.Get("series"), "", q.Get("interval")))
		if code != http.StatusOK || a.Status != "success" {
			t.Errorf("the link %s does not load: %d %s", u, code, raw)
			continue
		}
		loaded++
	}
	t.Logf("%d of %d playground links load; %d rows", loaded, len(links), len(rows))
}

// TestUpstreamErrorRateIsRecent: the status page's error rate is over the
// last minutes, as the rates are: an upstream down for the last minute
// shows 100%, whatever it answered an hour ago. The page reloads itself.
func TestUpstreamErrorRateIsRecent(t *testing.T) {
	rec := NewRecorder()
	clock := time.Unix(1_800_000_000, 0)
	rec.now = func() time.Time { return clock }
	u := New(Options{
		Gatherer: prometheus.NewRegistry(), Recorder: rec, Ready: func() bool { return true },
		Reload: func() ReloadStatus { return ReloadStatus{Upstreams: []Upstream{{Name: "tsdb", URL: "http://tsdb"}}} },
		Config: func() ([]byte, error) { return nil, nil },
	})
	rate := func() string {
		t.Helper()
		v, err := u.status(clock)
		if err != nil {
			t.Fatal(err)
		}
		return v.Upstreams[0].ErrorRate
	}
	if got := rate(); got != "–" {
		t.Errorf("no answer yet: error rate %q, want –", got)
	}
	for range 300 { // an hour of answers, all accepted
		rec.ObserveUpstream(remotewrite.UpstreamAnswer{Upstream: "tsdb", Code: 204})
		clock = clock.Add(12 * time.Second)
	}
	if got := rate(); got != "0.0%" {
		t.Errorf("all accepted: error rate %q, want 0.0%%", got)
	}
	for range 10 { // then a minute down
		rec.ObserveUpstream(remotewrite.UpstreamAnswer{Upstream: "tsdb", Code: 503, Message: "down"})
		clock = clock.Add(6 * time.Second)
	}
	if got := rate(); got != "100.0%" {
		t.Errorf("down for the last minute, after an hour up: error rate %q, want 100.0%% (the lifetime's would be 3.2%%)", got)
	}
	clock = clock.Add(10 * time.Minute)
	if got := rate(); got != "–" {
		t.Errorf("nothing sent for 10 minutes: error rate %q, want –", got)
	}

	w := httptest.NewRecorder()
	u.serveStatus(w, httptest.NewRequest(http.MethodGet, "/", nil))
	if body := w.Body.String(); !strings.Contains(body, `<meta http-equiv="refresh" content="10">`) || !strings.Contains(body, "(last 1m)") {
		t.Errorf("the status page neither reloads itself nor says over what the error rate is:\n%s", body)
	}
}
