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
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rwfix/rwfix/remotewrite/rwtest"
	"github.com/rwfix/rwfix/remotewrite/wire"
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
	// A recording receiver that answers like an RW 2.0 receiver (the sender
	// checks the Written headers).
	up := rwtest.NewRecordingUpstream(t)
	exp := newFakeLiteLLM(t, true)
	_, p := startPrometheus(t, "sender", bin, senderConfig(exp.Addr, up.URL, senderOpts{rw2: rw2}))
	time.Sleep(12 * time.Second)
	p.stop(t)
	// Save the first 20 request bodies that carry LiteLLM series, as they
	// came over the wire.
	want := rwtest.ProtoV1
	if rw2 {
		want = rwtest.ProtoV2
	}
	n := 0
	for _, r := range up.Requests() {
		if n >= 20 {
			break
		}
		if !bytes.Contains(r.Raw, []byte("litellm_")) {
			continue
		}
		if r.Proto != want {
			t.Fatalf("the sender sent %s, want %s", r.ContentType, want)
		}
		n++
		name := filepath.Join(fixtureDir, fmt.Sprintf("%s-%02d%s", prefix, n, wire.CaptureExt(want)))
		if err := os.WriteFile(name, r.Body, 0o644); err != nil {
			t.Error(err)
		}
	}
	if n == 0 {
		t.Fatal("captured nothing")
	}
	t.Logf("captured %d request bodies with LiteLLM series as %s-*", n, prefix)
}
