package remotewrite

// Fuzz targets: arbitrary bytes into the scanner and the whole handler, and
// arbitrary valid requests (from a fuzzed seed) through the fast and the
// reference path. Seeds: testdata/fuzz/ (committed) plus the captured
// fixtures. .ci/run runs each target for a bounded time:
//
//	go test -run '^$' -fuzz '^FuzzScan$' -fuzztime 10s ./remotewrite

import (
	"bytes"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/golang/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"

	"github.com/rwfix/rwfix/remotewrite/rwtest"
	"github.com/rwfix/rwfix/remotewrite/wire"
)

// fixtureSeeds are the captured requests of ../testdata/fixtures, decompressed.
func fixtureSeeds(f *testing.F) (v1, v2 [][]byte) { return fixtureSeedsRaw(f) }

func fixtureSeedsRaw(f testing.TB) (v1, v2 [][]byte) {
	files, _ := filepath.Glob("../testdata/fixtures/*.rw[12]")
	for _, file := range files {
		c, err := rwtest.ReadCapture(file)
		if err != nil {
			f.Fatal(err)
		}
		if c.Proto == ProtoV2 {
			v2 = append(v2, c.Raw)
		} else {
			v1 = append(v1, c.Raw)
		}
	}
	return v1, v2
}

// FuzzHandler: any body, both content types, through the whole handler into
// an in-memory upstream. Only the documented answers may come back.
func FuzzHandler(f *testing.F) {
	v1, v2 := fixtureSeeds(f)
	for _, b := range v1 {
		f.Add(false, snappy.Encode(nil, b))
	}
	for _, b := range v2 {
		f.Add(true, snappy.Encode(nil, b))
	}
	f.Add(false, []byte("not snappy"))
	u := upstreamFor(f, "http://127.0.0.1:1/api/v1/write", 0)
	u.client = &http.Client{Transport: discard{}}
	h := NewHandler(litellmPipeline(f, "collision: {policy: merge}"), []*Upstream{u}, WithLimits(1<<20, 4<<20))
	f.Fuzz(func(t *testing.T, rw2 bool, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
		req.Header.Set("Content-Type", wire.ContentType(protoFor(rw2)))
		req.Header.Set("Content-Encoding", "snappy")
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() { h.ServeHTTP(rec, req); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			buf := make([]byte, 1<<20)
			t.Fatalf("the handler hangs on this input:\n%s", buf[:runtime.Stack(buf, true)])
		}
		switch rec.Code {
		case http.StatusNoContent, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("unexpected answer %d: %s", rec.Code, rec.Body)
		}
	})
}

// FuzzValidRequests: valid random request sequences (the fuzzer picks the
// seed) through the fast path and the reference path; same output required.
func FuzzValidRequests(f *testing.F) {
	for seed := range uint64(8) {
		f.Add(seed, seed%2 == 0, uint8(seed))
	}
	f.Fuzz(func(t *testing.T, seed uint64, rw2 bool, steps uint8) {
		rng := rand.New(rand.NewPCG(seed, 1))
		proto := string(protoFor(rw2))
		fast, ref := litellmPipeline(t, "collision: {policy: merge}"), litellmPipeline(t, "collision: {policy: merge}")
		for step := range int64(steps%6) + 1 {
			v1 := randomRequest(rng, (step+1)*10000)
			raw := marshalAs(t, v1, rw2)
			got, _ := runFast(t, fast, proto, raw)
			want, _ := runReference(t, ref, proto, raw)
			if g, w := rwtest.MustRender(t, proto, got), rwtest.MustRender(t, proto, want); g != w {
				t.Fatalf("fast path differs from reference:\nfast:\n%s\nreference:\n%s", g, w)
			}
		}
	})
}

func protoFor(rw2 bool) remoteapi.WriteMessageType {
	if rw2 {
		return ProtoV2
	}
	return ProtoV1
}
