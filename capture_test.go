package main

// TestCaptureFixtures re-makes the remote-write fixtures in testdata/fixtures
// from real Prometheus servers. It runs only when asked:
//
//	go test -run TestCaptureFixtures -capture .
//
// Debian's Prometheus 2.42 (RW 1.0) and Prometheus 3.x (RW 2.0) scrape the
// fake LiteLLM exporter (with "None" series that collide with genuine 500
// series, and a gauge that vanishes so that a stale marker is sent) and
// remote-write to a recording receiver, which saves every request body that
// carries LiteLLM series exactly as it came over the wire (snappy-compressed).

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rwfix/rwfix/remotewrite"
)

var capture = flag.Bool("capture", false, "re-capture testdata/fixtures from real Prometheus servers")

const fixtureDir = "testdata/fixtures"

func TestCaptureFixtures(t *testing.T) {
	if !*capture {
		t.Skip("run with -capture to re-make testdata/fixtures")
	}
	for _, c := range []struct {
		prefix string
		bin    string
		rw2    bool
	}{
		{"prometheus-2.42-rw1", prometheus2(t), false},
		{"prometheus-3-rw2", prometheus3(t), true},
	} {
		t.Run(c.prefix, func(t *testing.T) { captureFrom(t, c.prefix, c.bin, c.rw2) })
	}
}

func captureFrom(t *testing.T, prefix, bin string, rw2 bool) {
	old, _ := filepath.Glob(filepath.Join(fixtureDir, prefix+"-*"))
	for _, f := range old {
		_ = os.Remove(f)
	}
	if err := os.MkdirAll(fixtureDir, 0o755); err != nil {
		t.Fatal(err)
	}
	var (
		mu sync.Mutex
		n  int
	)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		raw, err := snappyDecode(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// Answer like an RW 2.0 receiver: the sender checks Written headers.
		if rw2 {
			s, h, e := countRW2(t, raw)
			w.Header().Set("X-Prometheus-Remote-Write-Samples-Written", strconv.Itoa(s))
			w.Header().Set("X-Prometheus-Remote-Write-Histograms-Written", strconv.Itoa(h))
			w.Header().Set("X-Prometheus-Remote-Write-Exemplars-Written", strconv.Itoa(e))
		}
		w.WriteHeader(http.StatusNoContent)
		if !bytes.Contains(raw, []byte("litellm_")) {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if n >= 20 {
			return
		}
		n++
		ext := ".rw1"
		if rw2 {
			ext = ".rw2"
		}
		name := filepath.Join(fixtureDir, fmt.Sprintf("%s-%02d%s", prefix, n, ext))
		if err := os.WriteFile(name, body, 0o644); err != nil {
			t.Error(err)
		}
	})}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()

	exp := newFakeLiteLLM(t, true)
	_, p := startPrometheus(t, "sender", bin, senderConfig(exp.Addr, "http://"+l.Addr().String()+"/api/v1/write", senderOpts{rw2: rw2}))
	time.Sleep(12 * time.Second)
	p.stop(t)
	mu.Lock()
	defer mu.Unlock()
	if n == 0 {
		t.Fatal("captured nothing")
	}
	t.Logf("captured %d request bodies with LiteLLM series as %s-*", n, prefix)
}

func countRW2(t *testing.T, raw []byte) (samples, histograms, exemplars int) {
	t.Helper()
	out, err := renderBatch(remotewrite.ProtoV2, raw)
	if err != nil {
		return 0, 0, 0
	}
	for _, line := range strings.Split(out, "\n") {
		samples += strings.Count(line, " s=")
		histograms += strings.Count(line, " h=")
		exemplars += strings.Count(line, " ex=")
	}
	return
}
