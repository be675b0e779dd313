package wire_test

import (
	"math"
	"testing"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/prometheus/model/value"

	"github.com/rwfix/rwfix/remotewrite/rwtest"
	"github.com/rwfix/rwfix/remotewrite/wire"
)

// render is what rwtest.MustRender does, with the error returned.
func render(proto remoteapi.WriteMessageType, raw []byte) (string, error) {
	series, err := wire.Decode(proto, raw)
	if err != nil {
		return "", err
	}
	return wire.RenderSeries(series), nil
}

func TestRenderSeries(t *testing.T) {
	got, err := render(remoteapi.WriteV2MessageType, rwtest.ExampleV2(t))
	if err != nil {
		t.Fatal(err)
	}
	want := `{__name__="c_total"} s=10:4 st@10=5 ex=10:1:{trace_id="t"} meta=counter unit="" help="help"
{__name__="h"} h=10:{count:2, sum:3, (0.5,1]:2} hst@10=7 meta=unknown unit="" help=""
`
	if got != want {
		t.Errorf("RW 2.0:\n%s\nwant:\n%s", got, want)
	}
	got, err = render(remoteapi.WriteV1MessageType, rwtest.ExampleV1(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := "{__name__=\"up\"} s=10:1 s=20:2.5 ex=10:1:[{trace_id t {} [] 0}]\n# metadata up GAUGE unit=\"\" help=\"h\"\n"; got != want {
		t.Errorf("RW 1.0:\n%q\nwant:\n%q", got, want)
	}
	if _, err := render("foo.Bar", nil); err == nil {
		t.Error("unknown protocol: no error")
	}
	if _, err := render(remoteapi.WriteV1MessageType, []byte{0x0a, 0x50, 0x01}); err == nil {
		t.Error("corrupt request: no error")
	}
}

func TestFormatValue(t *testing.T) {
	for v, want := range map[float64]string{1: "1", 2.5: "2.5", 0.1: "0.1", 1e21: "1e+21", math.Float64frombits(value.StaleNaN): "NaN(0x7ff0000000000002)"} {
		if got := wire.FormatValue(v); got != want {
			t.Errorf("FormatValue(%v) = %s, want %s", v, got, want)
		}
	}
}
