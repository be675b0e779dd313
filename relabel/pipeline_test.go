package relabel

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/labels"
	"go.yaml.in/yaml/v2"
)

func pipeline(t *testing.T, doc string, reg prometheus.Registerer) *Pipeline {
	t.Helper()
	cfg := DefaultConfig()
	if err := yaml.UnmarshalStrict([]byte(doc), &cfg); err != nil {
		t.Fatal(err)
	}
	p, err := New(cfg, NewMetrics(reg), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLiteLLMPreset(t *testing.T) {
	p := pipeline(t, "", nil)
	for _, tc := range []struct {
		in, want string
		changed  bool
	}{
		{`{__name__="litellm_proxy_total_requests_metric_total", status_code="None", user="a"}`,
			`{__name__="litellm_proxy_total_requests_metric_total", status_code="500", user="a"}`, true},
		{`{__name__="litellm_proxy_total_requests_metric_created", status_code="None"}`,
			`{__name__="litellm_proxy_total_requests_metric_created", status_code="500"}`, true},
		{`{__name__="litellm_proxy_failed_requests_metric_total", exception_status="None", exception_class="Timeout"}`,
			`{__name__="litellm_proxy_failed_requests_metric_total", exception_class="Timeout", exception_status="500"}`, true},
		{`{__name__="litellm_proxy_failed_requests_metric_created", exception_status="None"}`,
			`{__name__="litellm_proxy_failed_requests_metric_created", exception_status="500"}`, true},
		// Only the named label on the named metrics, only the exact value "None".
		{`{__name__="litellm_proxy_total_requests_metric_total", status_code="200", end_user="None"}`, "", false},
		{`{__name__="litellm_proxy_total_requests_metric_total", status_code="none"}`, "", false},
		{`{__name__="litellm_proxy_failed_requests_metric_total", status_code="None"}`, "", false},
		{`{__name__="litellm_proxy_total_requests_metric_total", exception_status="None"}`, "", false},
		{`{__name__="litellm_deployment_failure_responses_total", status_code="None"}`, "", false},
		{`{__name__="litellm_proxy_total_requests_metric_bucket", status_code="None"}`, "", false},
	} {
		in := mustParse(t, tc.in)
		out, changed, keep := p.Repair(in)
		want := in
		if tc.changed {
			want = mustParse(t, tc.want)
		}
		if !keep || changed != tc.changed || !labels.Equal(out, want) {
			t.Errorf("%s: got %s changed=%v keep=%v, want %s changed=%v", tc.in, out, changed, keep, want, tc.changed)
		}
	}
	for in, want := range map[string]bool{
		`{__name__="up"}`: false,
		`{__name__="litellm_proxy_total_requests_metric_total", status_code="200"}`:   false,
		`{__name__="litellm_proxy_total_requests_metric_total", status_code="None"}`:  true,
		`{__name__="litellm_proxy_total_requests_metric_total", status_code="500"}`:   true, // a merge target
		`{__name__="litellm_proxy_failed_requests_metric_total", status_code="None"}`: false,
	} {
		if got := p.MayChange(mustParse(t, in)); got != want {
			t.Errorf("MayChange(%s) = %v, want %v", in, got, want)
		}
	}
}

// TestMayChangeNameMemo: decide's mayChange, which keeps the last metric
// names' rewrites from series to series, answers as MayChange does, over a
// sequence of series of a few metrics (more than the memo holds), grouped
// and mixed.
func TestMayChangeNameMemo(t *testing.T) {
	p := pipeline(t, "collision: {policy: merge}", nil)
	var sets []labels.Labels
	for _, s := range []string{
		`{__name__="up"}`,
		`{__name__="litellm_proxy_total_requests_metric_total", status_code="200"}`,
		`{__name__="litellm_proxy_total_requests_metric_total", status_code="None"}`,
		`{__name__="litellm_proxy_total_requests_metric_total", status_code="500"}`,
		`{__name__="litellm_proxy_total_requests_metric_total", exception_status="None"}`,
		`{__name__="litellm_proxy_failed_requests_metric_total", status_code="None"}`,
		`{__name__="litellm_proxy_failed_requests_metric_total", exception_status="None"}`,
		`{__name__="litellm_proxy_failed_requests_metric_total", exception_status="500"}`,
		`{__name__="litellm_proxy_failed_requests_metric_created", exception_status="None"}`,
		`{__name__="litellm_proxy_failed_requests_metric_totax", exception_status="None"}`,
		`{status_code="None"}`,
	} {
		sets = append(sets, mustParse(t, s))
	}
	rng := rand.New(rand.NewPCG(5, 6))
	var last nameRewrites
	ls := sets[0]
	for k := range 2000 {
		if rng.IntN(3) > 0 { // else the same again: runs of one metric, as requests have
			ls = sets[rng.IntN(len(sets))]
		}
		if got, want := p.mayChange(ls, &last), p.MayChange(ls); got != want {
			t.Fatalf("series %d, %s: mayChange %v after %q, MayChange %v", k, ls, got, last.names[:last.n], want)
		}
	}
}

func TestUserRulesAfterPresets(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := pipeline(t, `
relabel_configs:
  - source_labels: [__name__]
    regex: go_.*
    action: drop
  - source_labels: [status_code]
    regex: "5.."
    target_label: error_class
    replacement: server
  - regex: hashed_api_key
    action: labeldrop
`, reg)
	if !p.MayChange(labels.FromStrings("__name__", "anything")) {
		t.Error("with user rules every series may change")
	}
	// Presets run first: the user's rule sees status_code="500".
	out, changed, keep := p.Repair(mustParse(t, `{__name__="litellm_proxy_total_requests_metric_total", status_code="None", hashed_api_key="ab12"}`))
	want := mustParse(t, `{__name__="litellm_proxy_total_requests_metric_total", error_class="server", status_code="500"}`)
	if !keep || !changed || !labels.Equal(out, want) {
		t.Errorf("got %s %v %v, want %s", out, changed, keep, want)
	}
	if _, _, keep := p.Repair(mustParse(t, `{__name__="go_goroutines"}`)); keep {
		t.Error("drop rule did not drop")
	}
	in := mustParse(t, `{__name__="up", job="x"}`)
	if out, changed, keep := p.Repair(in); changed || !keep || !labels.Equal(out, in) {
		t.Errorf("untouched series: got %s %v %v", out, changed, keep)
	}
	if got := counter(t, reg, "rwfix_series_repaired_total", "litellm"); got != 1 {
		t.Errorf("repaired{rule=litellm} = %v, want 1", got)
	}
	if got := counter(t, reg, "rwfix_series_repaired_total", RuleUserRelabel); got != 1 {
		t.Errorf("repaired{rule=relabel_configs} = %v, want 1", got)
	}
	if got := counter(t, reg, "rwfix_series_dropped_total", RuleUserRelabel); got != 1 {
		t.Errorf("dropped{rule=relabel_configs} = %v, want 1", got)
	}
}

func TestKeepAndEmptyLabels(t *testing.T) {
	p := pipeline(t, `
presets: []
relabel_configs:
  - source_labels: [__name__]
    regex: litellm_.*
    action: keep
  - regex: .*
    action: labeldrop
`, nil)
	if !p.MayChange(labels.FromStrings("__name__", "x")) {
		t.Error("rules present: MayChange must be true")
	}
	if _, _, keep := p.Repair(mustParse(t, `{__name__="up"}`)); keep {
		t.Error("keep rule kept a non-matching series")
	}
	// Every label dropped: Prometheus drops a series with no labels.
	if _, _, keep := p.Repair(mustParse(t, `{__name__="litellm_x", a="b"}`)); keep {
		t.Error("series with no labels left was kept")
	}
	// presets: [] turns the preset off.
	p = pipeline(t, "presets: []", nil)
	in := mustParse(t, `{__name__="litellm_proxy_total_requests_metric_total", status_code="None"}`)
	if _, changed, _ := p.Repair(in); changed {
		t.Error("presets: [] must disable the litellm preset")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ doc, err string }{
		{"presets: [nope]", `unknown preset "nope"`},
		{"presets: [litellm, litellm]", "listed twice"},
		{"relabel_configs:\n  - action: replace\n    source_labels: [a]", "relabel_configs[0]: relabel configuration for replace action requires 'target_label'"},
		{"relabel_configs:\n  - action: hashmod\n    target_label: x", "modulus"},
		{"relabel_configs:\n  - regex: '('", "error parsing regexp"},
		{"presetz: []", "field presetz not found"},
	} {
		cfg := DefaultConfig()
		err := yaml.UnmarshalStrict([]byte(tc.doc), &cfg)
		if err == nil {
			_, err = New(cfg, nil, nil)
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%q: got %v, want error containing %q", tc.doc, err, tc.err)
		}
	}
}

func mustParse(t *testing.T, s string) labels.Labels {
	t.Helper()
	s = strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}")
	var b labels.ScratchBuilder
	for _, kv := range strings.Split(s, ", ") {
		k, v, _ := strings.Cut(kv, "=")
		b.Add(k, strings.Trim(v, `"`))
	}
	b.Sort()
	return b.Labels()
}

func counter(t *testing.T, reg *prometheus.Registry, name, rule string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			if labelValue(m, "rule") == rule {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestDecisionCacheKeysNameOneLabelSet: the decision cache trusts its keys
// (no comparison of labels), so two label sets whose name/value bytes run
// together alike (a value holding the 0xff separator, possible with
// validate_utf8 off) must not share a key — nor long labels, nor label sets
// that differ in where one label ends.
func TestDecisionCacheKeysNameOneLabelSet(t *testing.T) {
	p, err := New(DefaultConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := "litellm_proxy_total_requests_metric_total"
	long := strings.Repeat("k", 600) // beyond the hasher's buffer
	sets := []labels.Labels{
		labels.FromStrings("__name__", n, "status_code", "None", "user", "a\xffzz\xffb"),
		labels.FromStrings("__name__", n, "status_code", "None", "user", "a", "zz", "b"),
		labels.FromStrings("__name__", n, "status_code", "None", "user", "ab"),
		labels.FromStrings("__name__", n, "status_code", "None", "usera", "b"),
		labels.FromStrings("__name__", n, "status_code", "None", "user", long),
		labels.FromStrings("__name__", n, "status_code", "None", "user", long+"x"),
		labels.FromStrings("__name__", n, "status_code", "None", "user", long[:300], "v", long[:300]),
	}
	for round := range 2 { // the second round answers from the cache
		for _, ls := range sets {
			e, _ := p.decide(newSliceBatch([]labels.Labels{ls}, [][]Sample{{{T: int64(round), V: 1}}}))
			if len(e) != 1 || !labels.Equal(e[0].orig, ls) {
				t.Fatalf("round %d: %v decided as %v", round, ls, e)
			}
			if want := labels.NewBuilder(ls).Set("status_code", "500").Labels(); !labels.Equal(e[0].out, want) {
				t.Fatalf("round %d: %v repaired to %v, want %v", round, ls, e[0].out, want)
			}
		}
	}
}
