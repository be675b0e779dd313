package offline

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
)

func TestParseInputPromtool(t *testing.T) {
	in, err := ParseInput(`
# a comment
m{l="a}b", x="y"} 1 _ stale 0+2x2
other 5
`, 10, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(in) != 2 || in[0].Line != 3 || in[0].Labels.Get("l") != "a}b" || in[1].Line != 4 {
		t.Fatalf("got %+v", in)
	}
	v := in[0].Values
	if len(v) != 6 || *v[0] != 1 || v[1] != nil || !value.IsStaleNaN(*v[2]) || *v[5] != 4 {
		t.Errorf("values: %v", v)
	}
	if s, vals := in[0].Spec(); s != `m{l="a}b", x="y"}` || vals != "1 _ stale 0 2 4" {
		t.Errorf("spec: %s %s", s, vals)
	}
}

func TestParseInputExposition(t *testing.T) {
	in, err := ParseInput(`# HELP req_total Requests.
# TYPE req_total counter
req_total{code="None"} 3 1700000000000
req_total{code="500"} 4
# TYPE lat histogram
lat_bucket{le="+Inf"} 2
lat_sum 0.5
`, 10, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(in) != 4 || in[0].Line != 3 || *in[0].Values[0] != 3 || len(in[0].Values) != 1 || in[2].Labels.Get("le") != "+Inf" || *in[3].Values[0] != 0.5 {
		t.Errorf("got %+v", in)
	}
}

func TestParseInputErrors(t *testing.T) {
	for _, tc := range []struct {
		text string
		want string
		err  error
	}{
		{"a 1\nb{ 1", "line 2", ErrBadInput},
		{"# TYPE a counter\na 1\na{ 2", "line 3", ErrBadInput},
		{"a 1\na 2", "repeats line 1", ErrBadInput},
		{"a 1\nb 1\nc 1", "more than 2 series", ErrTooLarge},
		{"a 1+1x99999999999999999999", "more than 10 steps", ErrTooLarge},
		{"  \n# only\n", "no series", ErrBadInput},
	} {
		_, err := ParseInput(tc.text, 2, 10)
		if !errors.Is(err, tc.err) || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %v with %q", tc.text, err, tc.err, tc.want)
		}
	}
}

// TestPlayWithoutRepairer: every series comes out as it went in, one list
// of changes per step (empty). The merge's runs are in package ui's tests.
func TestPlayWithoutRepairer(t *testing.T) {
	in, err := ParseInput("m{s=\"x\"} 1 2\nm{s=\"y\"} 10 20\n", 10, 10)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Play(nil, in, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Steps != 2 || len(res.Output) != 2 || res.Output[0].Values[1] != 2 || len(res.Changes) != 2 || len(res.Changes[0]) != 0 {
		t.Errorf("no repairer: %+v", res)
	}
	if math.IsNaN(res.Output[1].Values[0]) || !labels.Equal(res.Output[1].Labels, in[1].Labels) {
		t.Errorf("output: %+v", res.Output)
	}
}
