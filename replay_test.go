package main

// TestReplayFixtures runs every captured remote-write body in
// testdata/fixtures through the real handler and pipeline (as main wires
// them) into a recording upstream, and compares what the upstream received
// with a golden file. Re-make the golden files with:
//
//	go test -run TestReplayFixtures -update .

import (
	"bytes"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/rwfix/rwfix/relabel"
	"github.com/rwfix/rwfix/remotewrite"
	"github.com/rwfix/rwfix/remotewrite/rwtest"
	"github.com/rwfix/rwfix/remotewrite/wire"
)

var update = flag.Bool("update", false, "rewrite golden files")

// newTestHandler wires a handler the way main does, with the configuration
// file cfgPath ("" for the defaults).
func newTestHandler(t *testing.T, cfgPath, upstreamURL string) (*remotewrite.Handler, *rwtest.Clock) {
	t.Helper()
	cfg, err := loadConfig(cfgPath, []string{upstreamURL}, 0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := relabel.New(cfg.Repair, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	u, err := remotewrite.NewUpstream(cfg.Upstreams[0])
	if err != nil {
		t.Fatal(err)
	}
	clock := rwtest.NewClock(time.Time{})
	p.SetMergeClock(clock.Now)
	return remotewrite.NewHandler(p, []*remotewrite.Upstream{u}), clock
}

// followCapture moves the merge's clock of a replay to the latest sample of
// a capture, as if the requests came in real time.
func followCapture(t *testing.T, c *rwtest.Clock, capt rwtest.Capture) {
	series, err := wire.Decode(capt.Proto, capt.Raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range series {
		for _, smp := range s.Samples {
			c.Advance(time.UnixMilli(smp.Timestamp))
		}
	}
}

func TestReplayFixtures(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(fixtureDir, "*.rw[12]"))
	if len(files) == 0 {
		t.Fatal("no fixtures in testdata/fixtures (re-make them with -capture)")
	}
	// One handler per capture, fed in capture order as the sender sent them,
	// so that the merge state carries across requests as in production.
	// testdata/config/replay.yml merges from the first request (no warm-up).
	captures := map[string][]string{}
	for _, f := range files {
		prefix := strings.TrimRight(strings.TrimSuffix(filepath.Base(f), filepath.Ext(f)), "0123456789")
		captures[prefix] = append(captures[prefix], f)
	}
	protos := map[remoteapi.WriteMessageType]int{}
	for prefix, files := range captures {
		up := rwtest.NewRecordingUpstream(t)
		h, clock := newTestHandler(t, "testdata/config/replay.yml", up.URL)
		for i, f := range files {
			ok := t.Run(filepath.Base(f), func(t *testing.T) {
				c, err := rwtest.ReadCapture(f)
				if err != nil {
					t.Fatal(err)
				}
				protos[c.Proto]++
				followCapture(t, clock, c)
				replayOne(t, h, up, f, c)
				if i == len(files)-1 {
					// The merged samples still held go out with the next
					// request once their wait is over: an empty one here.
					clock.Add(3 * time.Minute)
					empty := rwtest.Capture{Proto: c.Proto, Body: snappy.Encode(nil, emptyRequest(t, c.Proto))}
					empty.Raw, _ = snappy.Decode(nil, empty.Body)
					replayOne(t, h, up, strings.TrimSuffix(f, filepath.Ext(f))+"-drain"+filepath.Ext(f), empty)
				}
			})
			if !ok {
				t.Fatalf("%s: stopping this capture's replay: later requests depend on the merge state", prefix)
			}
		}
	}
	if protos[rwtest.ProtoV1] == 0 || protos[rwtest.ProtoV2] == 0 {
		t.Errorf("fixtures must cover both protocols, have %v", protos)
	}
}

// emptyRequest is a request without series, in proto.
func emptyRequest(t *testing.T, proto remoteapi.WriteMessageType) []byte {
	if proto == rwtest.ProtoV2 {
		raw, err := (&writev2.Request{Symbols: []string{""}}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	return nil
}

func replayOne(t *testing.T, h http.Handler, up *rwtest.RecordingUpstream, f string, c rwtest.Capture) {
	proto := c.Proto
	before := up.Len()
	req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(c.Body))
	req.Header.Set("Content-Type", wire.ContentType(proto))
	req.Header.Set("Content-Encoding", "snappy")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNoContent {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	in := rwtest.MustRender(t, string(proto), c.Raw)
	if proto == rwtest.ProtoV2 {
		// Written headers count every sample the sender sent, merged ones too.
		want := strings.Count(in, " s=")
		if hv := rec.Header().Get("X-Prometheus-Remote-Write-Samples-Written"); hv != strconv.Itoa(want) {
			t.Errorf("Samples-Written = %q, want %d", hv, want)
		}
	}
	got := "# nothing forwarded: every series was merged into state\n"
	if reqs := up.Requests()[before:]; len(reqs) > 0 {
		if len(reqs) != 1 || reqs[0].Proto != proto {
			t.Fatalf("upstream got %d bodies (%v), want 1 in %s", len(reqs), up.ContentTypes()[before:], proto)
		}
		if reqs[0].Raw == nil {
			t.Fatal("the upstream got a body that is not snappy-compressed")
		}
		got = rwtest.MustRender(t, string(proto), reqs[0].Raw)
	}
	assertNoDuplicateSeries(t, got)
	golden := strings.TrimSuffix(f, filepath.Ext(f)) + ".golden"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (make it with -update)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (re-make with -update if intended):\n%s", golden, lineDiff(string(want), got))
	}
}

// assertNoDuplicateSeries fails if one label set appears twice in a rendered
// batch: the TSDB would keep one of two values.
func assertNoDuplicateSeries(t *testing.T, rendered string) {
	t.Helper()
	seen := map[string]bool{}
	for _, line := range strings.Split(rendered, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		ls := line[:strings.Index(line, "} ")+1]
		if seen[ls] {
			t.Errorf("series forwarded twice in one request: %s", ls)
		}
		seen[ls] = true
	}
}

// lineDiff lists the lines only in want (-) or only in got (+).
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	inW, inG := map[string]int{}, map[string]int{}
	for _, l := range w {
		inW[l]++
	}
	for _, l := range g {
		inG[l]++
	}
	var b strings.Builder
	for _, l := range w {
		if inG[l] == 0 {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	for _, l := range g {
		if inW[l] == 0 {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	return b.String()
}
