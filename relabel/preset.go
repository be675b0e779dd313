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
// litellm: LiteLLM (litellm/integrations/prometheus.py) writes the HTTP
// status of a failure as str(status code), so a failure whose exception has
// no status code is counted under the Python repr "None". Its proposed fix
// (default the code to 500) was never merged, so rwfix applies it in the
// pipeline, on every counter whose status label LiteLLM fills that way:
//   - litellm_proxy_total_requests_metric, label status_code (the proxy's
//     failure hook; its success path writes "200");
//   - litellm_proxy_failed_requests_metric, label exception_status;
//   - litellm_deployment_failure_responses, label exception_status
//     (str(getattr(exception, "status_code", None)), then the exception's
//     code if it has one);
//   - litellm_deployment_successful_fallbacks and
//     litellm_deployment_failed_fallbacks, label exception_status (the
//     original exception's status code);
//   - litellm_deployment_cooled_down, label exception_status (the router's
//     str(status_code) of the exception that cooled the deployment down).
//
// Each is a prometheus_client Counter, exposed as <name>_total and
// <name>_created; the _created series are rewritten too, or they would keep
// describing a series that no longer exists. Labels that carry "None" for
// other reasons (end_user, team, user, model_id, api_base, ...) are never
// touched.
var presets = map[string][]valueRewrite{
	PresetLiteLLM: {
		counterRewrite("litellm_proxy_total_requests_metric", "status_code"),
		counterRewrite("litellm_proxy_failed_requests_metric", "exception_status"),
		counterRewrite("litellm_deployment_failure_responses", "exception_status"),
		counterRewrite("litellm_deployment_successful_fallbacks", "exception_status"),
		counterRewrite("litellm_deployment_failed_fallbacks", "exception_status"),
		counterRewrite("litellm_deployment_cooled_down", "exception_status"),
	},
}

// counterRewrite is LiteLLM's "None" -> "500" on one counter family.
func counterRewrite(family, label string) valueRewrite {
	return valueRewrite{names: []string{family + "_total", family + "_created"}, label: label, from: "None", to: "500"}
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
