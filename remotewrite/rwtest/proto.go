package rwtest

import (
	"fmt"
	"os"
	"strings"

	"github.com/golang/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"

	"github.com/rwfix/rwfix/remotewrite/wire"
)

// The remote-write protocols and their content types.
const (
	ProtoV1 = remoteapi.WriteV1MessageType // prometheus.WriteRequest (RW 1.0)
	ProtoV2 = remoteapi.WriteV2MessageType // io.prometheus.write.v2.Request (RW 2.0)
)

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

// Capture is a captured request body, read from its file.
type Capture struct {
	Proto remoteapi.WriteMessageType
	Body  []byte // as sent (snappy-compressed)
	Raw   []byte // decompressed
}

// ReadCapture reads a capture file and decompresses it.
func ReadCapture(path string) (Capture, error) {
	proto, ok := wire.ProtoOfCapture(path)
	if !ok {
		return Capture{}, fmt.Errorf("%s: not a %s or %s capture", path, wire.ExtV1, wire.ExtV2)
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
