package rwtest

import (
	"testing"

	"github.com/rwfix/rwfix/remotewrite/wire"
)

// MustRender prints a decompressed request in its text form
// (wire.RenderSeries, the format of `rwfix replay --full` and the golden
// files), failing the test on an error. proto is a protocol (ProtoV1, ProtoV2) or a
// Content-Type.
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
	return wire.RenderSeries(series)
}
