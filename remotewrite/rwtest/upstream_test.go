package rwtest

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"

	"github.com/rwfix/rwfix/remotewrite/wire"
)

func send(t *testing.T, url, ct string, body []byte) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Test", "yes")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp
}

func body(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func written(resp *http.Response) string {
	var out []string
	for _, k := range []string{"Samples", "Histograms", "Exemplars"} {
		out = append(out, resp.Header.Get("X-Prometheus-Remote-Write-"+k+"-Written"))
	}
	return strings.Join(out, ",")
}

func TestRecordingUpstreamDefaults(t *testing.T) {
	up := NewRecordingUpstream(t)
	if !strings.HasPrefix(up.URL, "http://127.0.0.1:") {
		t.Errorf("URL %s: want 127.0.0.1", up.URL)
	}
	v1, v2 := ExampleV1(t), ExampleV2(t)
	if resp := send(t, up.URL, wire.ContentTypeV1, snappy.Encode(nil, v1)); resp.StatusCode != http.StatusNoContent || written(resp) != ",," {
		t.Errorf("RW 1.0: %d Written %q, want 204 without Written headers", resp.StatusCode, written(resp))
	}
	if resp := send(t, up.URL, wire.ContentTypeV2, snappy.Encode(nil, v2)); resp.StatusCode != http.StatusNoContent || written(resp) != "1,1,1" {
		t.Errorf("RW 2.0: %d Written %q, want 204 counting 1,1,1", resp.StatusCode, written(resp))
	}
	if resp := send(t, up.URL, "text/plain", snappy.Encode(nil, v1)); resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain: %d, want 415", resp.StatusCode)
	}
	if resp := send(t, up.URL, wire.ContentTypeV1, []byte("not snappy")); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("not snappy: %d, want 400", resp.StatusCode)
	}
	if resp := send(t, up.URL, wire.ContentTypeV2, snappy.Encode(nil, []byte{0x0a, 0x50, 0x01})); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("corrupt protobuf: %d, want 400", resp.StatusCode)
	}
	reqs := up.Requests()
	if len(reqs) != 5 || up.Len() != 5 || len(up.Bodies()) != 5 || len(up.Headers()) != 5 {
		t.Fatalf("recorded %d requests, want all 5", len(reqs))
	}
	if !bytes.Equal(reqs[0].Raw, v1) || !bytes.Equal(reqs[1].Raw, v2) || reqs[3].Raw != nil {
		t.Error("Raw is not the decompressed body")
	}
	if !bytes.Equal(reqs[1].Body, snappy.Encode(nil, v2)) || reqs[1].Header.Get("X-Test") != "yes" {
		t.Error("Body or Header not as sent")
	}
	if got := strings.Join(up.ContentTypes(), " "); got != wire.ContentTypeV1+" "+wire.ContentTypeV2+" text/plain "+wire.ContentTypeV1+" "+wire.ContentTypeV2 {
		t.Errorf("content types %s", got)
	}
	if reqs[0].Proto != ProtoV1 || reqs[1].Proto != ProtoV2 || reqs[2].Proto != "" {
		t.Errorf("protos %q %q %q", reqs[0].Proto, reqs[1].Proto, reqs[2].Proto)
	}
}

func TestRecordingUpstreamOptions(t *testing.T) {
	v1, v2 := snappy.Encode(nil, ExampleV1(t)), snappy.Encode(nil, ExampleV2(t))

	up := NewRecordingUpstream(t, Answer(429, "slow down"), RetryAfter("7"))
	resp := send(t, up.URL, wire.ContentTypeV2, v2)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body(resp), "slow down") || resp.Header.Get("Retry-After") != "7" || written(resp) != ",," {
		t.Errorf("got %d %q Retry-After %q Written %q", resp.StatusCode, body(resp), resp.Header.Get("Retry-After"), written(resp))
	}
	up.Set(Answer(200, ""))
	if resp := send(t, up.URL, wire.ContentTypeV1, v1); resp.StatusCode != http.StatusOK {
		t.Errorf("after Set: %d, want 200", resp.StatusCode)
	}

	up = NewRecordingUpstream(t, RejectRW2())
	if resp := send(t, up.URL, wire.ContentTypeV2, v2); resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("RejectRW2, RW 2.0: %d, want 415", resp.StatusCode)
	}
	if resp := send(t, up.URL, wire.ContentTypeV1, v1); resp.StatusCode != http.StatusNoContent {
		t.Errorf("RejectRW2, RW 1.0: %d, want 204", resp.StatusCode)
	}
	if up.Len() != 2 {
		t.Errorf("RejectRW2 recorded %d requests, want 2", up.Len())
	}

	up = NewRecordingUpstream(t, OmitWritten())
	if resp := send(t, up.URL, wire.ContentTypeV2, v2); resp.StatusCode != http.StatusNoContent || written(resp) != ",," {
		t.Errorf("OmitWritten: %d Written %q", resp.StatusCode, written(resp))
	}

	delayed := NewRecordingUpstream(t, Delay(200*time.Millisecond))
	start := time.Now()
	checked := make(chan struct{})
	go func() {
		defer close(checked)
		time.Sleep(100 * time.Millisecond)
		if delayed.Len() != 1 {
			t.Error("Delay: the request was not recorded before the wait")
		}
	}()
	if resp := send(t, delayed.URL, wire.ContentTypeV1, v1); resp.StatusCode != http.StatusNoContent || time.Since(start) < 200*time.Millisecond {
		t.Errorf("Delay: %d after %v", resp.StatusCode, time.Since(start))
	}
	<-checked

	up = NewRecordingUpstream(t, Discard())
	if resp := send(t, up.URL, wire.ContentTypeV2, []byte("anything")); resp.StatusCode != http.StatusNoContent || written(resp) != "0,0,0" {
		t.Errorf("Discard: %d Written %q", resp.StatusCode, written(resp))
	}
	if up.Len() != 0 {
		t.Error("Discard kept a request")
	}
}
