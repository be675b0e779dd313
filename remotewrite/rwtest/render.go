package rwtest

import (
	"slices"
	"testing"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/rwfix/rwfix/remotewrite/wire"
)

// MustRender prints a decompressed request in its text form
// (wire.RenderSeries, the format of `rwfix replay --full` and the golden
// files), failing the test on an error. proto is a protocol (ProtoV1, ProtoV2) or a
// Content-Type.
//
// Series are printed as a receiver stores them: ordered by label set, the
// entries of one label set in request order. The order of different series
// in a request means nothing to a TSDB, and rwfix's encoder moves the series
// it changes after the others (see blankTag in remotewrite/splice.go); the
// order of one series' entries does (out of order is refused).
func MustRender(t testing.TB, proto string, raw []byte) string {
	t.Helper()
	p, err := ParseProto(proto)
	if err != nil {
		t.Fatal(err)
	}
	series, err := wire.Decode(p, raw)
	if err != nil {
		t.Fatalf("rendering a %s request: %v", proto, err)
	}
	slices.SortStableFunc(series, func(a, b wire.Series) int { return labels.Compare(a.Labels, b.Labels) })
	return wire.RenderSeries(series)
}
