package relabel

import (
	"fmt"
	"slices"
	"sort"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

// PresetLiteLLM is the name of the built-in LiteLLM repair.
const PresetLiteLLM = "litellm"

// valueRewrite is the one mechanism behind every preset: on series whose
// metric name is one of names, a label whose value is exactly from gets the
// value to. It matches on the metric name and that one label only, because
// the other labels of a LiteLLM series vary by version and configuration.
type valueRewrite struct {
	names []string
	label string
	from  string
	to    string
}

func (r *valueRewrite) matchesName(name string) bool {
	return slices.Contains(r.names, name)
}

// presets maps a preset name to its rewrites.
//
// litellm: LiteLLM counts failed requests that carry no HTTP status code with
// the Python repr of None. Its proposed fix (default the code to 500) was
// never merged, so rwfix applies it in the pipeline. The _created series are
// rewritten too, or they would keep describing a series that no longer exists.
var presets = map[string][]valueRewrite{
	PresetLiteLLM: {
		{
			names: []string{"litellm_proxy_total_requests_metric_total", "litellm_proxy_total_requests_metric_created"},
			label: "status_code", from: "None", to: "500",
		},
		{
			names: []string{"litellm_proxy_failed_requests_metric_total", "litellm_proxy_failed_requests_metric_created"},
			label: "exception_status", from: "None", to: "500",
		},
	},
}

// PresetNames lists the built-in presets, sorted.
func PresetNames() []string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func lookupPreset(name string) ([]valueRewrite, error) {
	p, ok := presets[name]
	if !ok {
		return nil, fmt.Errorf("unknown preset %q (known: %v)", name, PresetNames())
	}
	return p, nil
}

// apply rewrites the label in b if the series matches. It reports whether it
// changed anything.
func (r *valueRewrite) apply(b *labels.Builder) bool {
	if !r.matchesName(b.Get(model.MetricNameLabel)) || b.Get(r.label) != r.from {
		return false
	}
	b.Set(r.label, r.to)
	return true
}
