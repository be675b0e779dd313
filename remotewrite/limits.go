package remotewrite

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/common/model"
)

// Limits are rwfix's own caps on what a request may carry, to protect rwfix.
// A request that breaks one is rejected whole with 400 and a message naming
// the series; nothing of it is forwarded. (What Prometheus' receiver
// tolerates — labels out of order, a series it would skip — is not refused:
// see validate.) The defaults follow Mimir's distributor where it has one and
// leave room for any real Prometheus sender.
type Limits struct {
	MaxSeriesPerRequest int `yaml:"max_series_per_request,omitempty"`
	MaxLabelsPerSeries  int `yaml:"max_labels_per_series,omitempty"`
	MaxLabelNameLength  int `yaml:"max_label_name_length,omitempty"`
	MaxLabelValueLength int `yaml:"max_label_value_length,omitempty"`
	// ValidateUTF8: a series whose label names or values are not valid
	// UTF-8 is invalid (Prometheus' receiver skips it): forwarded as it came,
	// never repaired. false: such a series is repaired like any other.
	ValidateUTF8 *bool `yaml:"validate_utf8,omitempty"`
}

// DefaultLimits are the limits when the configuration sets none.
func DefaultLimits() Limits {
	t := true
	return Limits{
		MaxSeriesPerRequest: 100_000,
		MaxLabelsPerSeries:  64,
		MaxLabelNameLength:  1024,
		MaxLabelValueLength: 4096,
		ValidateUTF8:        &t,
	}
}

// UnmarshalYAML starts from the defaults.
func (l *Limits) UnmarshalYAML(unmarshal func(any) error) error {
	*l = DefaultLimits()
	type plain Limits
	return unmarshal((*plain)(l))
}

// Validate checks the limits.
func (l *Limits) Validate() error {
	if l.MaxSeriesPerRequest <= 0 || l.MaxLabelsPerSeries <= 0 || l.MaxLabelNameLength <= 0 || l.MaxLabelValueLength <= 0 {
		return fmt.Errorf("limits must be positive: %+v", *l)
	}
	return nil
}

// Reasons a request is rejected, the reason label of rwfix_requests_rejected_total.
const (
	ReasonBodyTooLarge       = "body_too_large"
	ReasonDecodedTooLarge    = "decoded_too_large"
	ReasonUnsupportedMedia   = "unsupported_media_type"
	ReasonCorrupt            = "corrupt"
	ReasonTooManySeries      = "too_many_series"
	ReasonTooManyLabels      = "too_many_labels"
	ReasonLabelNameTooLong   = "label_name_too_long"
	ReasonLabelValueTooLong  = "label_value_too_long"
	ReasonInvalidUTF8        = "invalid_utf8"
	ReasonEmptyLabelName     = "empty_label_name"
	ReasonUnsortedLabels     = "unsorted_labels"
	ReasonDuplicateLabelName = "duplicate_label_name"
	ReasonOverloaded         = "overloaded"
)

// RejectError is a request refused for what it carries.
type RejectError struct {
	Reason string
	Msg    string
}

func (e *RejectError) Error() string { return e.Msg }

// validate checks the scanned request against rwfix's own limits (sizes
// and counts, which protect rwfix: a request beyond one is refused whole,
// 400), and marks the series that Prometheus' receiver would sort or skip
// rather than refuse the request for (see checkLabels). It reads the index
// only, and allocates only for a series whose labels are out of order.
func (s *scanned) validate(l *Limits) error {
	if len(s.series) > l.MaxSeriesPerRequest {
		return &RejectError{ReasonTooManySeries, fmt.Sprintf("request has %d series, more than the limit of %d", len(s.series), l.MaxSeriesPerRequest)}
	}
	utf := l.ValidateUTF8 == nil || *l.ValidateUTF8
	for i := range s.series {
		c := seriesPairs{s, &s.series[i]}
		var err *RejectError
		n := c.len()
		for j := range n {
			name, value := c.pair(j)
			if len(name) > l.MaxLabelNameLength {
				err = &RejectError{ReasonLabelNameTooLong, fmt.Sprintf("label name of %d bytes is longer than the limit of %d", len(name), l.MaxLabelNameLength)}
				break
			}
			if len(value) > l.MaxLabelValueLength {
				err = &RejectError{ReasonLabelValueTooLong, fmt.Sprintf("label %s: value of %d bytes is longer than the limit of %d", name, len(value), l.MaxLabelValueLength)}
				break
			}
		}
		if err == nil && n > l.MaxLabelsPerSeries {
			err = &RejectError{ReasonTooManyLabels, fmt.Sprintf("has %d labels, more than the limit of %d", n, l.MaxLabelsPerSeries)}
		}
		if err != nil {
			err.Msg = fmt.Sprintf("timeseries[%d] %s %s", i, s.describe(i), err.Msg)
			return err
		}
		si := &s.series[i]
		reason, unsorted := checkLabels(c, utf, &s.names)
		si.unsorted, si.invalid = unsorted && reason == "", reason != ""
		if reason != "" {
			s.invalid = append(s.invalid, reason)
		}
	}
	return nil
}

// labelPairs are one series' labels in wire order.
type labelPairs interface {
	len() int
	pair(j int) (name, value string)
}

// Why a series is invalid for Prometheus' receiver (storage/remote/write_handler.go,
// RW 1.0 and 2.0): it sorts every series' labels itself, then skips a series
// without a metric name, with an invalid name or value (UTF-8 validation),
// or with a label name twice. rwfix does the same: it sorts, and forwards
// such a series as it came, never repaired, so that the upstream gives the
// verdict it gives without rwfix (RW 1.0: the series is dropped and the
// request accepted; RW 2.0: 400 after storing the other series).
const (
	InvalidNoMetricName   = "no_metric_name"
	InvalidEmptyLabelName = "empty_label_name"
	InvalidUTF8           = "invalid_utf8"
	InvalidDuplicateName  = "duplicate_label_name"
)

// checkLabels reads a series' labels in wire order and reports why
// Prometheus' receiver would skip it ("" if it would not), and whether they
// are out of order. names is scratch space. It does not allocate for a
// sorted series.
//
// Generic, so that each caller's pairs are read by direct, inlined calls.
func checkLabels[P labelPairs](p P, utf bool, names *[]string) (reason string, unsorted bool) {
	var prev string
	n, hasName, dup := 0, false, false
	for j := range p.len() {
		name, value := p.pair(j)
		switch {
		case reason != "":
		case name == "":
			reason = InvalidEmptyLabelName
		case utf && (!utf8.ValidString(name) || !utf8.ValidString(value)):
			reason = InvalidUTF8
		case name == model.MetricNameLabel && value == "":
			reason = InvalidNoMetricName
		}
		if name == model.MetricNameLabel {
			hasName = true
		}
		if n > 0 {
			switch c := strings.Compare(name, prev); {
			case c == 0:
				dup = true
			case c < 0:
				unsorted = true
			}
		}
		prev = name
		n++
	}
	if unsorted && reason == "" {
		// Names out of order can hide a duplicate: look again, sorted.
		ns := (*names)[:0]
		for j := range p.len() {
			name, _ := p.pair(j)
			ns = append(ns, name)
		}
		slices.Sort(ns)
		for j := 1; j < len(ns); j++ {
			dup = dup || ns[j] == ns[j-1]
		}
		*names = ns[:0]
	}
	switch {
	case reason != "":
	case !hasName:
		reason = InvalidNoMetricName
	case dup:
		reason = InvalidDuplicateName
	}
	return reason, unsorted
}

// describe renders series i's labels for an error message, bounded.
func (s *scanned) describe(i int) string {
	var b strings.Builder
	b.WriteByte('{')
	first := true
	s.rawPairs(i, func(name, value string) {
		if b.Len() > 256 {
			return
		}
		if !first {
			b.WriteString(", ")
		}
		first = false
		if !utf8.ValidString(name) {
			name = strconv.Quote(name)
		}
		b.WriteString(name)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(value))
	})
	if b.Len() > 256 {
		b.WriteString(", ...")
	}
	b.WriteByte('}')
	return b.String()
}
