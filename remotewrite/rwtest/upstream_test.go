package rwtest

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

func testV1(t *testing.T) []byte {
	t.Helper()
	req := &prompb.WriteRequest{
		Timeseries: []prompb.TimeSeries{{
			Labels:    []prompb.Label{{Name: "__name__", Value: "up"}},
			Samples:   []prompb.Sample{{Value: 1, Timestamp: 10}, {Value: 2.5, Timestamp: 20}},
			Exemplars: []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: "t"}}, Value: 1, Timestamp: 10}},
		}},
		Metadata: []prompb.MetricMetadata{{Type: prompb.MetricMetadata_GAUGE, MetricFamilyName: "up", Help: "h"}},
	}
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func testV2(t *testing.T) []byte {
	t.Helper()
	st := writev2.NewSymbolTable()
	h := &histogram.Histogram{Count: 2, Sum: 3, Schema: 0, PositiveSpans: []histogram.Span{{Offset: 0, Length: 1}}, PositiveBuckets: []int64{2}}
	req := &writev2.Request{Timeseries: []writev2.TimeSeries{
		{
			LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "c_total"), nil),
			Samples:    []writev2.Sample{{Value: 4, Timestamp: 10, StartTimestamp: 5}},
			Exemplars:  []writev2.Exemplar{{LabelsRefs: st.SymbolizeLabels(labels.FromStrings("trace_id", "t"), nil), Value: 1, Timestamp: 10}},
			Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, HelpRef: st.Symbolize("help")},
		},
		{LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "h"), nil), Histograms: []writev2.Histogram{writev2.FromIntHistogram(7, 10, h)}},
	}}
	req.Symbols = st.Symbols()
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

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
	v1, v2 := testV1(t), testV2(t)
	if resp := send(t, up.URL, ContentTypeV1, snappy.Encode(nil, v1)); resp.StatusCode != http.StatusNoContent || written(resp) != ",," {
		t.Errorf("RW 1.0: %d Written %q, want 204 without Written headers", resp.StatusCode, written(resp))
	}
	if resp := send(t, up.URL, ContentTypeV2, snappy.Encode(nil, v2)); resp.StatusCode != http.StatusNoContent || written(resp) != "1,1,1" {
		t.Errorf("RW 2.0: %d Written %q, want 204 counting 1,1,1", resp.StatusCode, written(resp))
	}
	if resp := send(t, up.URL, "text/plain", snappy.Encode(nil, v1)); resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain: %d, want 415", resp.StatusCode)
	}
	if resp := send(t, up.URL, ContentTypeV1, []byte("not snappy")); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("not snappy: %d, want 400", resp.StatusCode)
	}
	if resp := send(t, up.URL, ContentTypeV2, snappy.Encode(nil, []byte{0x0a, 0x50, 0x01})); resp.StatusCode != http.StatusBadRequest {
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
	if got := strings.Join(up.ContentTypes(), " "); got != ContentTypeV1+" "+ContentTypeV2+" text/plain "+ContentTypeV1+" "+ContentTypeV2 {
		t.Errorf("content types %s", got)
	}
	if reqs[0].Proto != ProtoV1 || reqs[1].Proto != ProtoV2 || reqs[2].Proto != "" {
		t.Errorf("protos %q %q %q", reqs[0].Proto, reqs[1].Proto, reqs[2].Proto)
	}
}

func TestRecordingUpstreamOptions(t *testing.T) {
	v1, v2 := snappy.Encode(nil, testV1(t)), snappy.Encode(nil, testV2(t))

	up := NewRecordingUpstream(t, Answer(429, "slow down"), RetryAfter("7"))
	resp := send(t, up.URL, ContentTypeV2, v2)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body(resp), "slow down") || resp.Header.Get("Retry-After") != "7" || written(resp) != ",," {
		t.Errorf("got %d %q Retry-After %q Written %q", resp.StatusCode, body(resp), resp.Header.Get("Retry-After"), written(resp))
	}
	up.Set(Answer(200, ""))
	if resp := send(t, up.URL, ContentTypeV1, v1); resp.StatusCode != http.StatusOK {
		t.Errorf("after Set: %d, want 200", resp.StatusCode)
	}

	up = NewRecordingUpstream(t, RejectRW2())
	if resp := send(t, up.URL, ContentTypeV2, v2); resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("RejectRW2, RW 2.0: %d, want 415", resp.StatusCode)
	}
	if resp := send(t, up.URL, ContentTypeV1, v1); resp.StatusCode != http.StatusNoContent {
		t.Errorf("RejectRW2, RW 1.0: %d, want 204", resp.StatusCode)
	}
	if up.Len() != 2 {
		t.Errorf("RejectRW2 recorded %d requests, want 2", up.Len())
	}

	up = NewRecordingUpstream(t, OmitWritten())
	if resp := send(t, up.URL, ContentTypeV2, v2); resp.StatusCode != http.StatusNoContent || written(resp) != ",," {
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
	if resp := send(t, delayed.URL, ContentTypeV1, v1); resp.StatusCode != http.StatusNoContent || time.Since(start) < 200*time.Millisecond {
		t.Errorf("Delay: %d after %v", resp.StatusCode, time.Since(start))
	}
	<-checked

	up = NewRecordingUpstream(t, Discard())
	if resp := send(t, up.URL, ContentTypeV2, []byte("anything")); resp.StatusCode != http.StatusNoContent || written(resp) != "0,0,0" {
		t.Errorf("Discard: %d Written %q", resp.StatusCode, written(resp))
	}
	if up.Len() != 0 {
		t.Error("Discard kept a request")
	}
}

func TestRender(t *testing.T) {
	got, err := Render(string(ProtoV2), testV2(t))
	if err != nil {
		t.Fatal(err)
	}
	want := `{__name__="c_total"} s=10:4 st@10=5 ex=10:1:{trace_id="t"} meta=counter unit="" help="help"
{__name__="h"} h=10:{count:2, sum:3, (0.5,1]:2} hst@10=7 meta=unknown unit="" help=""
`
	if got != want {
		t.Errorf("RW 2.0:\n%s\nwant:\n%s", got, want)
	}
	got, err = Render(ContentTypeV1, testV1(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := "{__name__=\"up\"} s=10:1 s=20:2.5 ex=10:1:[{trace_id t {} [] 0}]\n# metadata up GAUGE unit=\"\" help=\"h\"\n"; got != want {
		t.Errorf("RW 1.0 (by content type):\n%q\nwant:\n%q", got, want)
	}
	if _, err := Render("foo.Bar", nil); err == nil {
		t.Error("unknown protocol: no error")
	}
	if _, err := Render(string(ProtoV1), []byte{0x0a, 0x50, 0x01}); err == nil {
		t.Error("corrupt request: no error")
	}
}

func TestProtoOfFile(t *testing.T) {
	for path, want := range map[string]string{"a/b-01.rw1": string(ProtoV1), "b.rw2": string(ProtoV2), "c.golden": ""} {
		p, err := ProtoOfFile(path)
		if string(p) != want || (err != nil) != (want == "") {
			t.Errorf("%s: %q %v, want %q", path, p, err, want)
		}
		if want != "" && FileExt(p) != path[strings.LastIndexByte(path, '.'):] {
			t.Errorf("FileExt(%s) = %s", p, FileExt(p))
		}
	}
	if ContentType(ProtoV2) != ContentTypeV2 || ContentType(ProtoV1) != ContentTypeV1 {
		t.Error("ContentType")
	}
}
