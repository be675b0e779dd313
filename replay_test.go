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
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/golang/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"

	"github.com/rwfix/rwfix/relabel"
	"github.com/rwfix/rwfix/remotewrite"
	"github.com/rwfix/rwfix/remotewrite/offline"
)

var update = flag.Bool("update", false, "rewrite golden files")

func snappyDecode(b []byte) ([]byte, error) { return snappy.Decode(nil, b) }

// renderBatch prints a decompressed request as `rwfix replay --full` does.
func renderBatch(proto remoteapi.WriteMessageType, raw []byte) (string, error) {
	return offline.Render(proto, raw)
}

// recordingUpstream is a remote-write receiver that keeps every body.
type recordingUpstream struct {
	mu     sync.Mutex
	bodies [][]byte
	protos []remoteapi.WriteMessageType
	srv    *httptest.Server
}

func newRecordingUpstream(t *testing.T) *recordingUpstream {
	t.Helper()
	u := &recordingUpstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		proto, err := remoteapi.ParseProtoMsg(r.Header.Get("Content-Type"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnsupportedMediaType)
			return
		}
		u.mu.Lock()
		u.bodies = append(u.bodies, body)
		u.protos = append(u.protos, proto)
		u.mu.Unlock()
		if proto == remotewrite.ProtoV2 {
			w.Header().Set("X-Prometheus-Remote-Write-Samples-Written", "1")
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func fixtureProto(name string) remoteapi.WriteMessageType {
	if strings.HasSuffix(name, ".rw2") {
		return remotewrite.ProtoV2
	}
	return remotewrite.ProtoV1
}

func contentTypeFor(p remoteapi.WriteMessageType) string {
	if p == remotewrite.ProtoV2 {
		return "application/x-protobuf;proto=io.prometheus.write.v2.Request"
	}
	return "application/x-protobuf"
}

// newTestHandler wires a handler the way main does, with the configuration
// file cfgPath ("" for the defaults).
func newTestHandler(t *testing.T, cfgPath, upstreamURL string) *remotewrite.Handler {
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
	return remotewrite.NewHandler(p, []*remotewrite.Upstream{u})
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
		up := newRecordingUpstream(t)
		h := newTestHandler(t, "testdata/config/replay.yml", up.srv.URL+"/api/v1/write")
		for _, f := range files {
			ok := t.Run(filepath.Base(f), func(t *testing.T) {
				proto := fixtureProto(f)
				protos[proto]++
				replayOne(t, h, up, f, proto)
			})
			if !ok {
				t.Fatalf("%s: stopping this capture's replay: later requests depend on the merge state", prefix)
			}
		}
	}
	if protos[remotewrite.ProtoV1] == 0 || protos[remotewrite.ProtoV2] == 0 {
		t.Errorf("fixtures must cover both protocols, have %v", protos)
	}
}

func replayOne(t *testing.T, h http.Handler, up *recordingUpstream, f string, proto remoteapi.WriteMessageType) {
	body, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	before := len(up.bodies)
	req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
	req.Header.Set("Content-Type", contentTypeFor(proto))
	req.Header.Set("Content-Encoding", "snappy")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNoContent {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	inRaw, _ := snappyDecode(body)
	in, _ := renderBatch(proto, inRaw)
	if proto == remotewrite.ProtoV2 {
		// Written headers count every sample the sender sent, merged ones too.
		want := strings.Count(in, " s=")
		if hv := rec.Header().Get("X-Prometheus-Remote-Write-Samples-Written"); hv != strconv.Itoa(want) {
			t.Errorf("Samples-Written = %q, want %d", hv, want)
		}
	}
	got := "# nothing forwarded: every series was merged into state\n"
	if len(up.bodies) > before {
		if len(up.bodies) != before+1 || up.protos[before] != proto {
			t.Fatalf("upstream got %d bodies (%v), want 1 in %s", len(up.bodies)-before, up.protos[before:], proto)
		}
		raw, err := snappyDecode(up.bodies[before])
		if err != nil {
			t.Fatal(err)
		}
		if got, err = renderBatch(proto, raw); err != nil {
			t.Fatal(err)
		}
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
