package remotewrite

import (
	"bytes"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	promrelabel "github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/prompb"
	"go.yaml.in/yaml/v2"

	"github.com/rwfix/rwfix/relabel"
	"github.com/rwfix/rwfix/remotewrite/rwtest"
)

func TestUpstreamCredentialsAndHeaders(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pw"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := `url: ` + up.URL + `
basic_auth: {username: rwfix, password_file: pw}
headers: {X-Static: yes}
forward_headers: [X-Scope-OrgID]
`
	var c UpstreamConfig
	if err := yaml.UnmarshalStrict([]byte(doc), &c); err != nil {
		t.Fatal(err)
	}
	c.HTTPClientConfig.SetDirectory(dir)
	u, err := NewUpstream(c)
	if err != nil {
		t.Fatal(err)
	}
	// The configuration never shows the secret.
	out, _ := yaml.Marshal(c)
	if strings.Contains(string(out), "s3cret") {
		t.Errorf("marshalled config shows the secret: %s", out)
	}
	h := NewHandler(litellmPipeline(t, ""), []*Upstream{u})
	body := encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{v1Series(okTotal, prompb.Sample{Value: 1, Timestamp: 1})}})
	req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
	req.Header.Set("Content-Type", ctV1)
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Authorization", "Bearer sender-token")
	req.Header.Set("X-Scope-OrgID", "tenant-1")
	req.Header.Set("X-Other", "not forwarded")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNoContent {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	hdrs := up.Headers()
	if len(hdrs) != 1 {
		t.Fatalf("upstream got %d requests, want 1", len(hdrs))
	}
	got := hdrs[0]
	user, pass, ok := (&http.Request{Header: got}).BasicAuth()
	if !ok || user != "rwfix" || pass != "s3cret" {
		t.Errorf("upstream Authorization = %q: want basic auth from password_file, not the sender's token", got.Get("Authorization"))
	}
	if got.Get("X-Scope-OrgID") != "tenant-1" || got.Get("X-Static") != "yes" || got.Get("X-Other") != "" {
		t.Errorf("upstream headers %v: want X-Scope-OrgID forwarded, X-Static set, X-Other not forwarded", got)
	}
	// Without forward_headers nothing of the sender's is forwarded.
	up2 := rwtest.NewRecordingUpstream(t)
	h2 := NewHandler(litellmPipeline(t, ""), []*Upstream{upstreamFor(t, up2.URL, 0)})
	h2.ServeHTTP(httptest.NewRecorder(), req.Clone(req.Context()))
	req2 := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
	req2.Header = req.Header.Clone()
	h2.ServeHTTP(httptest.NewRecorder(), req2)
	hdrs2 := up2.Headers()
	for _, hd := range hdrs2 {
		if hd.Get("Authorization") != "" || hd.Get("X-Scope-OrgID") != "" {
			t.Errorf("sender headers forwarded without configuration: %v", hd)
		}
	}
	if len(hdrs2) == 0 {
		t.Error("upstream got nothing")
	}
}

func TestDryRunForwardsOriginalAndCounts(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t)
	m := NewMetrics(nil)
	h := NewHandler(litellmPipeline(t, ""), []*Upstream{upstreamFor(t, up.URL, 0)}, WithMetrics(m), WithDryRun(true))
	body := encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		v1Series(noneTotal, prompb.Sample{Value: 3, Timestamp: 10}),
		v1Series(okTotal, prompb.Sample{Value: 1, Timestamp: 10}),
	}})
	if rec := post(t, h, ctV1, body); rec.Code != http.StatusNoContent {
		t.Fatalf("status %d", rec.Code)
	}
	bodies := up.Bodies()
	if len(bodies) != 1 || !bytes.Equal(bodies[0], body) {
		t.Fatal("dry run did not forward the original bytes")
	}
	if v := testutil.ToFloat64(m.dryRun.WithLabelValues("repaired")) + testutil.ToFloat64(m.dryRun.WithLabelValues("merged")); v == 0 {
		t.Error("dry run counted nothing that the rules would have changed")
	}
}

// TestDryRunCountsWhatWouldChange: a dry run counts each series once for
// what the rules would do to it — repaired: its labels would change (merged
// or not), merged: it would be summed with another series (the genuine 500
// included), dropped — consistent with rwfix_series_repaired_total; a
// genuine 500 series that nothing lands on counts for nothing; the log line
// says the same and shows an example.
func TestDryRunCountsWhatWouldChange(t *testing.T) {
	series := func(user, code string) labels.Labels {
		return labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_total", "status_code", code, "user", user)
	}
	reg := prometheus.NewRegistry()
	cfg := relabel.DefaultConfig()
	cfg.RelabelConfigs = litellmPipelineRules(t, `relabel_configs: [{source_labels: [user], regex: drop-me, action: drop}]`)
	p, err := relabel.New(cfg, relabel.NewMetrics(reg), nil)
	if err != nil {
		t.Fatal(err)
	}
	up := rwtest.NewRecordingUpstream(t)
	m := NewMetrics(nil)
	var logs bytes.Buffer
	h := NewHandler(p, []*Upstream{upstreamFor(t, up.URL, 0)}, WithMetrics(m), WithDryRun(true),
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	body := encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		v1Series(series("alone", "None"), prompb.Sample{Value: 3, Timestamp: 10}),  // repaired, nothing to merge with
		v1Series(series("genuine", "500"), prompb.Sample{Value: 5, Timestamp: 10}), // untouched
		v1Series(series("both", "None"), prompb.Sample{Value: 1, Timestamp: 10}),   // repaired and merged
		v1Series(series("both", "500"), prompb.Sample{Value: 2, Timestamp: 10}),    // merged
		v1Series(series("drop-me", "200"), prompb.Sample{Value: 2, Timestamp: 10}), // dropped
		v1Series(series("ok", "200"), prompb.Sample{Value: 7, Timestamp: 10}),      // untouched
	}})
	if rec := post(t, h, ctV1, body); rec.Code != http.StatusNoContent {
		t.Fatalf("status %d", rec.Code)
	}
	got := map[string]float64{}
	for _, a := range []string{"repaired", "merged", "dropped"} {
		got[a] = testutil.ToFloat64(m.dryRun.WithLabelValues(a))
	}
	if want := map[string]float64{"repaired": 2, "merged": 2, "dropped": 1}; !maps.Equal(got, want) {
		t.Errorf("rwfix_dry_run_series_total %v, want %v", got, want)
	}
	if v := rwtest.CounterValue(t, reg, "rwfix_series_repaired_total"); v != got["repaired"] {
		t.Errorf("rwfix_series_repaired_total %v, rwfix_dry_run_series_total{action=\"repaired\"} %v: they must agree", v, got["repaired"])
	}
	log := logs.String()
	for _, want := range []string{"repaired=2", "merged=2", "dropped=1", `status_code=\"None\"`, `-> `} {
		if !strings.Contains(log, want) {
			t.Errorf("the dry-run log lacks %s:\n%s", want, log)
		}
	}
	if strings.Contains(log, `example=""`) {
		t.Errorf("the dry-run log has no example:\n%s", log)
	}
}

func litellmPipelineRules(t *testing.T, doc string) []*promrelabel.Config {
	t.Helper()
	var c struct {
		Rules []*promrelabel.Config `yaml:"relabel_configs"`
	}
	if err := yaml.UnmarshalStrict([]byte(doc), &c); err != nil {
		t.Fatal(err)
	}
	return c.Rules
}
