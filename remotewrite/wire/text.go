package wire

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// RenderSeries prints decoded series as text: one line per series in
// request order, labels resolved, every float sample as
// " s=<timestamp>:<exact value>", then start timestamps (RW 2.0, when set:
// " st@<timestamp>=<start>", histograms' " hst@<timestamp>=<start>"),
// histograms, exemplars and metadata; RW 1.0 metadata follows as
// "# metadata" lines. It is what `rwfix replay --full` prints, what
// testdata/fixtures/*.golden hold, and how the tests compare requests.
func RenderSeries(series []Series) string {
	var b strings.Builder
	for _, s := range series {
		if s.Labels.IsEmpty() {
			b.WriteString(s.Other + "\n")
			continue
		}
		b.WriteString(s.Labels.String())
		for _, smp := range s.Samples {
			fmt.Fprintf(&b, " s=%d:%s", smp.Timestamp, FormatValue(smp.Value))
		}
		b.WriteString(s.Other + "\n")
	}
	return b.String()
}

// Series is one series of a decoded request, with its float samples.
type Series struct {
	Labels  labels.Labels
	Samples []prompb.Sample
	Other   string // histograms, exemplars, metadata, rendered
}

// Decode returns the series of a decompressed request, in request order.
func Decode(proto remoteapi.WriteMessageType, raw []byte) ([]Series, error) {
	var out []Series
	var sb labels.ScratchBuilder
	switch proto {
	case remoteapi.WriteV1MessageType:
		var req prompb.WriteRequest
		if err := req.Unmarshal(raw); err != nil {
			return nil, err
		}
		for _, ts := range req.Timeseries {
			s := Series{Labels: ts.ToLabels(&sb, nil), Samples: ts.Samples}
			var o strings.Builder
			for _, h := range ts.Histograms {
				fmt.Fprintf(&o, " h=%d:%s", h.Timestamp, h.ToFloatHistogram().String())
			}
			for _, e := range ts.Exemplars {
				fmt.Fprintf(&o, " ex=%d:%s:%v", e.Timestamp, FormatValue(e.Value), e.Labels)
			}
			s.Other = o.String()
			out = append(out, s)
		}
		for _, m := range req.Metadata {
			out = append(out, Series{Other: fmt.Sprintf("# metadata %s %s unit=%q help=%q", m.MetricFamilyName, m.Type, m.Unit, m.Help)})
		}
	case remoteapi.WriteV2MessageType:
		var req writev2.Request
		if err := req.Unmarshal(raw); err != nil {
			return nil, err
		}
		for _, ts := range req.Timeseries {
			ls, err := ts.ToLabels(&sb, req.Symbols)
			if err != nil {
				return nil, err
			}
			s := Series{Labels: ls}
			var o strings.Builder
			for _, smp := range ts.Samples {
				s.Samples = append(s.Samples, prompb.Sample{Value: smp.Value, Timestamp: smp.Timestamp})
				if smp.StartTimestamp != 0 {
					fmt.Fprintf(&o, " st@%d=%d", smp.Timestamp, smp.StartTimestamp)
				}
			}
			for _, h := range ts.Histograms {
				fmt.Fprintf(&o, " h=%d:%s", h.Timestamp, h.ToFloatHistogram().String())
				if h.StartTimestamp != 0 {
					fmt.Fprintf(&o, " hst@%d=%d", h.Timestamp, h.StartTimestamp)
				}
			}
			for _, e := range ts.Exemplars {
				ex, err := e.ToExemplar(&sb, req.Symbols)
				if err != nil {
					return nil, err
				}
				fmt.Fprintf(&o, " ex=%d:%s:%v", ex.Ts, FormatValue(ex.Value), ex.Labels)
			}
			md, err := ts.ToMetadata(req.Symbols)
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(&o, " meta=%s unit=%q help=%q", md.Type, md.Unit, md.Help)
			s.Other = o.String()
			out = append(out, s)
		}
	default:
		return nil, fmt.Errorf("unknown protocol %q", proto)
	}
	return out, nil
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
