package remotewrite

import (
	"fmt"
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
