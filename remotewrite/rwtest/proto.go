package rwtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/golang/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
)

// The remote-write protocols and their content types.
const (
	ProtoV1 = remoteapi.WriteV1MessageType // prometheus.WriteRequest (RW 1.0)
	ProtoV2 = remoteapi.WriteV2MessageType // io.prometheus.write.v2.Request (RW 2.0)

	ContentTypeV1 = "application/x-protobuf"
	ContentTypeV2 = "application/x-protobuf;proto=" + string(ProtoV2)
)

// ContentType returns the Content-Type a sender uses for proto.
func ContentType(proto remoteapi.WriteMessageType) string {
	if proto == ProtoV2 {
		return ContentTypeV2
	}
	return ContentTypeV1
}

// ParseProto accepts a protocol (message type) or a Content-Type header and
// returns the protocol.
func ParseProto(protoOrContentType string) (remoteapi.WriteMessageType, error) {
	switch p := remoteapi.WriteMessageType(protoOrContentType); p {
	case ProtoV1, ProtoV2:
		return p, nil
	}
	if !strings.Contains(protoOrContentType, "/") {
		return "", fmt.Errorf("unknown remote-write protocol %q", protoOrContentType)
	}
	return remoteapi.ParseProtoMsg(protoOrContentType)
}

// Captured bodies (testdata/fixtures, `rwfix serve --capture.dir`) are
// stored as sent on the wire, snappy-compressed; the extension names the
// protocol.
const (
	ExtV1 = ".rw1"
	ExtV2 = ".rw2"
)

// ProtoOfFile returns the protocol of a capture file, by its extension.
func ProtoOfFile(path string) (remoteapi.WriteMessageType, error) {
	switch filepath.Ext(path) {
	case ExtV1:
		return ProtoV1, nil
	case ExtV2:
		return ProtoV2, nil
	}
	return "", fmt.Errorf("%s: not a %s or %s capture", path, ExtV1, ExtV2)
}

// Capture is a captured request body, read from its file.
type Capture struct {
	Proto remoteapi.WriteMessageType
	Body  []byte // as sent (snappy-compressed)
	Raw   []byte // decompressed
}

// ReadCapture reads a capture file and decompresses it.
func ReadCapture(path string) (Capture, error) {
	proto, err := ProtoOfFile(path)
	if err != nil {
		return Capture{}, err
	}
	body, err := os.ReadFile(path)
	if err != nil {
		return Capture{}, err
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		return Capture{}, fmt.Errorf("%s: %w", path, err)
	}
	return Capture{Proto: proto, Body: body, Raw: raw}, nil
}

// FileExt returns the capture file extension for proto.
func FileExt(proto remoteapi.WriteMessageType) string {
	if proto == ProtoV2 {
		return ExtV2
	}
	return ExtV1
}
