package wire

import (
	"path/filepath"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
)

// The Content-Types of the remote-write protocols, as senders set them.
const (
	ContentTypeV1 = "application/x-protobuf"
	ContentTypeV2 = ContentTypeV1 + ";proto=" + string(remoteapi.WriteV2MessageType)
)

// ContentType returns the Content-Type of a request in proto.
func ContentType(proto remoteapi.WriteMessageType) string {
	if proto == remoteapi.WriteV2MessageType {
		return ContentTypeV2
	}
	return ContentTypeV1
}

// Captured bodies (`rwfix serve --capture.dir`, testdata/fixtures) are
// stored as sent on the wire, snappy-compressed; the extension names the
// protocol: .rw1 for prometheus.WriteRequest, .rw2 for
// io.prometheus.write.v2.Request.
const (
	ExtV1 = ".rw1"
	ExtV2 = ".rw2"
)

// CaptureExt returns the capture file extension for proto.
func CaptureExt(proto remoteapi.WriteMessageType) string {
	if proto == remoteapi.WriteV2MessageType {
		return ExtV2
	}
	return ExtV1
}

// ProtoOfCapture returns the protocol a capture file holds, by its
// extension, or false for a file that is not a capture.
func ProtoOfCapture(path string) (remoteapi.WriteMessageType, bool) {
	switch filepath.Ext(path) {
	case ExtV1:
		return remoteapi.WriteV1MessageType, true
	case ExtV2:
		return remoteapi.WriteV2MessageType, true
	}
	return "", false
}
