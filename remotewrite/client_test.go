package remotewrite

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/common/version"
	"github.com/prometheus/prometheus/prompb"
	"go.yaml.in/yaml/v2"

	"github.com/rwfix/rwfix/remotewrite/rwtest"
)

func TestUpstreamAnswersMapped(t *testing.T) {
	body := func(t *testing.T) []byte {
		return encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{v1Series(noneTotal, prompb.Sample{Value: 1, Timestamp: 1})}})
	}
	for _, tc := range []struct {
		name       string
		answer     []rwtest.UpstreamOption
		code       int
		msg        string
		retryAfter string
	}{
		{"accepted", nil, 204, "", ""},
		{"server error", []rwtest.UpstreamOption{rwtest.Answer(503, "tsdb overloaded")}, 503, "tsdb overloaded", ""},
		{"rate limited", []rwtest.UpstreamOption{rwtest.Answer(429, "slow down"), rwtest.RetryAfter("7")}, 429, "slow down", "7"},
		{"bad request", []rwtest.UpstreamOption{rwtest.Answer(400, "out of order sample")}, 400, "out of order sample", ""},
		{"timeout", []rwtest.UpstreamOption{rwtest.Delay(2 * time.Second)}, 504, "timeout", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := rwtest.NewRecordingUpstream(t, tc.answer...)
			h := NewHandler(litellmPipeline(t, ""), []*Upstream{upstreamFor(t, up.URL, 300*time.Millisecond)})
			rec := post(t, h, ctV1, body(t))
			if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.msg) || rec.Header().Get("Retry-After") != tc.retryAfter {
				t.Errorf("got %d %q Retry-After=%q, want %d containing %q Retry-After=%q",
					rec.Code, rec.Body.String(), rec.Header().Get("Retry-After"), tc.code, tc.msg, tc.retryAfter)
			}
		})
	}
	t.Run("connection refused", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		h := NewHandler(litellmPipeline(t, ""), []*Upstream{upstreamFor(t, "http://"+addr+"/api/v1/write", time.Second)})
		if rec := post(t, h, ctV1, body(t)); rec.Code != http.StatusBadGateway {
			t.Errorf("got %d %q, want 502", rec.Code, rec.Body)
		}
	})
	t.Run("one of two upstreams fails", func(t *testing.T) {
		good, bad := rwtest.NewRecordingUpstream(t), rwtest.NewRecordingUpstream(t, rwtest.Answer(500, "disk full"))
		h := NewHandler(litellmPipeline(t, ""), []*Upstream{
			upstreamFor(t, good.URL, time.Second), upstreamFor(t, bad.URL, time.Second)})
		rec := post(t, h, ctV1, body(t))
		if rec.Code != 500 || !strings.Contains(rec.Body.String(), "disk full") {
			t.Errorf("got %d %q, want 500 with the failing upstream's message", rec.Code, rec.Body)
		}
		if n := good.Len(); n != 1 {
			t.Errorf("healthy upstream got %d requests, want 1", n)
		}
	})
}

func TestUpstreamConfigValidation(t *testing.T) {
	for _, tc := range []struct{ yaml, err string }{
		{"url: /relative", "absolute"},
		{"url: ftp://x/y", "scheme"},
		{"url: http://x/y\nheaders: {Content-Type: x}", "set by rwfix"},
		{"url: http://x/y\nbasic_auth: {username: a, password: b}\nauthorization: {credentials: c}", "at most one"},
	} {
		var c UpstreamConfig
		err := yaml.UnmarshalStrict([]byte(tc.yaml), &c)
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%q: got %v, want error containing %q", tc.yaml, err, tc.err)
		}
	}
	var c UpstreamConfig
	if err := yaml.UnmarshalStrict([]byte("url: https://mimir.example/api/v1/push\nbasic_auth: {username: u, password: p}"), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil || c.Name != "mimir.example" || c.Timeout != model.Duration(DefaultUpstreamTimeout) || !c.HTTPClientConfig.FollowRedirects {
		t.Errorf("defaults not applied: %v %+v", err, c)
	}
}

func TestUpstreamCredentialsAndHeaders(t *testing.T) {
	// The version as main sets it, after this package's initialization.
	defer func(v string) { version.Version = v }(version.Version)
	version.Version = "1.2.3-test"
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
	if ua := got.Get("User-Agent"); ua != "rwfix/1.2.3-test" {
		t.Errorf("upstream User-Agent %q, want rwfix/1.2.3-test", ua)
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
