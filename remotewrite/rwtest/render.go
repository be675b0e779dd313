package rwtest

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// Render prints a decompressed remote-write request as text, for comparing
// requests and for golden files: one line per series in request order,
// labels resolved, every float sample as " s=<timestamp>:<exact value>",
// then start timestamps (RW 2.0, when set), histograms, exemplars and
// metadata. RW 1.0 metadata follows as "# metadata" lines.
//
// The format is that of `rwfix replay --full` (testdata/fixtures/*.golden
// hold it; TestRenderMatchesReplayFull keeps the two the same), plus RW 2.0
// histogram start timestamps (" hst@<timestamp>=<start>", when set), which
// the replay output omits.
//
// proto is a protocol (ProtoV1, ProtoV2) or a Content-Type.
func Render(proto string, raw []byte) (string, error) {
	p, err := ParseProto(proto)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	var sb labels.ScratchBuilder
	switch p {
	case ProtoV1:
		var req prompb.WriteRequest
		if err := req.Unmarshal(raw); err != nil {
			return "", err
		}
		for _, ts := range req.Timeseries {
			b.WriteString(ts.ToLabels(&sb, nil).String())
			for _, s := range ts.Samples {
				fmt.Fprintf(&b, " s=%d:%s", s.Timestamp, FormatValue(s.Value))
			}
			for _, h := range ts.Histograms {
				fmt.Fprintf(&b, " h=%d:%s", h.Timestamp, h.ToFloatHistogram().String())
			}
			for _, e := range ts.Exemplars {
				fmt.Fprintf(&b, " ex=%d:%s:%v", e.Timestamp, FormatValue(e.Value), e.Labels)
			}
			b.WriteByte('\n')
		}
		for _, m := range req.Metadata {
			fmt.Fprintf(&b, "# metadata %s %s unit=%q help=%q\n", m.MetricFamilyName, m.Type, m.Unit, m.Help)
		}
	case ProtoV2:
		var req writev2.Request
		if err := req.Unmarshal(raw); err != nil {
			return "", err
		}
		for _, ts := range req.Timeseries {
			ls, err := ts.ToLabels(&sb, req.Symbols)
			if err != nil {
				return "", err
			}
			b.WriteString(ls.String())
			for _, s := range ts.Samples {
				fmt.Fprintf(&b, " s=%d:%s", s.Timestamp, FormatValue(s.Value))
			}
			for _, s := range ts.Samples {
				if s.StartTimestamp != 0 {
					fmt.Fprintf(&b, " st@%d=%d", s.Timestamp, s.StartTimestamp)
				}
			}
			for _, h := range ts.Histograms {
				fmt.Fprintf(&b, " h=%d:%s", h.Timestamp, h.ToFloatHistogram().String())
				if h.StartTimestamp != 0 {
					fmt.Fprintf(&b, " hst@%d=%d", h.Timestamp, h.StartTimestamp)
				}
			}
			for _, e := range ts.Exemplars {
				ex, err := e.ToExemplar(&sb, req.Symbols)
				if err != nil {
					return "", err
				}
				fmt.Fprintf(&b, " ex=%d:%s:%v", ex.Ts, FormatValue(ex.Value), ex.Labels)
			}
			md, err := ts.ToMetadata(req.Symbols)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(&b, " meta=%s unit=%q help=%q\n", md.Type, md.Unit, md.Help)
		}
	}
	return b.String(), nil
}

// MustRender is Render that fails the test on an error.
func MustRender(t testing.TB, proto string, raw []byte) string {
	t.Helper()
	s, err := Render(proto, raw)
	if err != nil {
		t.Fatalf("rendering a %s request: %v", proto, err)
	}
	return s
}

// FormatValue prints a sample value exactly: the shortest decimal that
// parses back to the same float64, and NaNs with their bits, since a stale
// marker is one exact NaN.
func FormatValue(v float64) string {
	if math.IsNaN(v) {
		return fmt.Sprintf("NaN(%#x)", math.Float64bits(v))
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
