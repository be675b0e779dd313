package remotewrite

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits are the caps on what a request may carry. A request that breaks one
// is rejected whole with 400 and a message naming the series; nothing of it
// is forwarded. The defaults follow Mimir's distributor where it has one and
// leave room for any real Prometheus sender.
type Limits struct {
	MaxSeriesPerRequest int `yaml:"max_series_per_request,omitempty"`
	MaxLabelsPerSeries  int `yaml:"max_labels_per_series,omitempty"`
	MaxLabelNameLength  int `yaml:"max_label_name_length,omitempty"`
	MaxLabelValueLength int `yaml:"max_label_value_length,omitempty"`
	// ValidateUTF8 rejects label names and values that are not valid UTF-8
	// (remote write requires it; a TSDB would reject them later, batch and all).
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

// validate checks the scanned request against l. It reads the index only.
func (s *scanned) validate(l *Limits) error {
	if len(s.series) > l.MaxSeriesPerRequest {
		return &RejectError{ReasonTooManySeries, fmt.Sprintf("request has %d series, more than the limit of %d", len(s.series), l.MaxSeriesPerRequest)}
	}
	utf := l.ValidateUTF8 == nil || *l.ValidateUTF8
	if utf && s.proto == ProtoV2 {
		for _, sp := range s.syms {
			if !utf8.ValidString(s.str(sp)) {
				return &RejectError{ReasonInvalidUTF8, fmt.Sprintf("symbol %q is not valid UTF-8", s.str(sp))}
			}
		}
	}
	for i := range s.series {
		var (
			prev string
			n    int
			err  *RejectError
		)
		s.Pairs(i, func(name, value string) {
			if err != nil {
				return
			}
			n++
			switch {
			case name == "":
				err = &RejectError{ReasonEmptyLabelName, "has an empty label name"}
			case len(name) > l.MaxLabelNameLength:
				err = &RejectError{ReasonLabelNameTooLong, fmt.Sprintf("label name of %d bytes is longer than the limit of %d", len(name), l.MaxLabelNameLength)}
			case len(value) > l.MaxLabelValueLength:
				err = &RejectError{ReasonLabelValueTooLong, fmt.Sprintf("label %s: value of %d bytes is longer than the limit of %d", name, len(value), l.MaxLabelValueLength)}
			case utf && s.proto == ProtoV1 && (!utf8.ValidString(name) || !utf8.ValidString(value)):
				err = &RejectError{ReasonInvalidUTF8, fmt.Sprintf("label %q=%q is not valid UTF-8", name, value)}
			case n > 1 && name == prev:
				err = &RejectError{ReasonDuplicateLabelName, fmt.Sprintf("label name %q appears twice", name)}
			case n > 1 && name < prev:
				err = &RejectError{ReasonUnsortedLabels, fmt.Sprintf("labels are not sorted by name (%q after %q)", name, prev)}
			}
			prev = name
		})
		if err == nil && n > l.MaxLabelsPerSeries {
			err = &RejectError{ReasonTooManyLabels, fmt.Sprintf("has %d labels, more than the limit of %d", n, l.MaxLabelsPerSeries)}
		}
		if err == nil && n == 0 {
			err = &RejectError{ReasonEmptyLabelName, "has no labels"}
		}
		if err != nil {
			err.Msg = fmt.Sprintf("timeseries[%d] %s %s", i, s.describe(i), err.Msg)
			return err
		}
	}
	return nil
}

// describe renders series i's labels for an error message, bounded.
func (s *scanned) describe(i int) string {
	var b strings.Builder
	b.WriteByte('{')
	first := true
	s.Pairs(i, func(name, value string) {
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
