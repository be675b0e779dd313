package wire_test

import (
	"path/filepath"
	"testing"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"

	"github.com/rwfix/rwfix/remotewrite/wire"
)

func TestCaptureExt(t *testing.T) {
	for path, want := range map[string]remoteapi.WriteMessageType{"a/b-01.rw1": remoteapi.WriteV1MessageType, "b.rw2": remoteapi.WriteV2MessageType, "c.golden": ""} {
		p, ok := wire.ProtoOfCapture(path)
		if p != want || ok != (want != "") {
			t.Errorf("%s: %q %v, want %q", path, p, ok, want)
		}
		if want != "" && wire.CaptureExt(p) != filepath.Ext(path) {
			t.Errorf("CaptureExt(%s) = %s", p, wire.CaptureExt(p))
		}
	}
}

func TestContentType(t *testing.T) {
	for proto, want := range map[remoteapi.WriteMessageType]string{remoteapi.WriteV1MessageType: "application/x-protobuf", remoteapi.WriteV2MessageType: "application/x-protobuf;proto=io.prometheus.write.v2.Request"} {
		if got := wire.ContentType(proto); got != want {
			t.Errorf("ContentType(%s) = %s, want %s", proto, got, want)
		}
		if p, err := remoteapi.ParseProtoMsg(wire.ContentType(proto)); err != nil || p != proto {
			t.Errorf("client_golang parses %s as %s, %v", wire.ContentType(proto), p, err)
		}
	}
}
