package ui

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/rwfix/rwfix/relabel"
	"github.com/rwfix/rwfix/remotewrite"
	"github.com/rwfix/rwfix/remotewrite/offline"
)

// Limits bound a playground run (POST /api/v1/repair). Beyond them the API
// answers 413 (body) or 400 (series, steps, samples), never runs.
type Limits struct {
	MaxBodyBytes int64 // request body (series, config and interval together)
	MaxSeries    int   // input series
	MaxSteps     int   // values per series
	MaxSamples   int   // series × steps
	MaxRuns      int   // runs at once; beyond, 503
}

// DefaultLimits are the playground's limits.
func DefaultLimits() Limits {
	return Limits{MaxBodyBytes: 1 << 20, MaxSeries: 1000, MaxSteps: 1000, MaxSamples: 100000, MaxRuns: 2}
}

const (
	defaultInterval = 15 * time.Second
	minInterval     = time.Second
	maxInterval     = 24 * time.Hour
)

// repairRequest is the body of POST /api/v1/repair.
type repairRequest struct {
	Series   string `json:"series"`
	Config   string `json:"config"`
	Interval string `json:"interval"`
}

// repairData is the answer's data. output, series and collisions are the
// documented contract; text and test are what the page shows and exports.
type repairData struct {
	Output     []apiOutput    `json:"output"`
	Series     []apiSeries    `json:"series"`
	Collisions []apiCollision `json:"collisions"`
	Steps      int            `json:"steps"`
	Interval   string         `json:"interval"`
	Text       string         `json:"text"` // the output in promtool notation
	Test       string         `json:"test"` // a `rwfix test rules` file: input and output
}

type apiOutput struct {
	Labels map[string]string `json:"labels"`
	Values [][2]any          `json:"values"`
}

type apiSeries struct {
	Labels map[string]string `json:"labels"`
	Values string            `json:"values"` // promtool notation
	Line   int               `json:"line"`
	Output map[string]string `json:"output"` // null when dropped
	Action string            `json:"action"` // unchanged, repaired, merged, dropped
	Rules  []traceStep       `json:"rules"`
}

type apiCollision struct {
	Output map[string]string   `json:"output"`
	Inputs []map[string]string `json:"inputs"`
	Values [][2]any            `json:"values"`
	// Merge is how the sources combine at each step: "sum" (a counter), or
	// "min" (a _created series: the earliest creation time).
	Merge string `json:"merge"`
}

// Input actions.
const (
	actionUnchanged = "unchanged"
	actionRepaired  = "repaired"
	actionMerged    = "merged"
	actionDropped   = "dropped"
)

// apiError is an answer of Prometheus' API envelope with an error.
type apiError struct {
	code      int
	errorType string
	err       error
}

func (e *apiError) Error() string { return e.err.Error() }

func badData(code int, format string, args ...any) *apiError {
	return &apiError{code: code, errorType: "bad_data", err: fmt.Errorf(format, args...)}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeAPIError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.code, map[string]string{"status": "error", "errorType": e.errorType, "error": e.err.Error()})
}

// serveRepair is POST /api/v1/repair.
func (u *UI) serveRepair(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeAPIError(w, &apiError{code: http.StatusMethodNotAllowed, errorType: "bad_data", err: errors.New("use POST with a JSON body")})
		return
	}
	select {
	case u.runs <- struct{}{}:
		defer func() { <-u.runs }()
	default:
		w.Header().Set("Retry-After", "1")
		writeAPIError(w, &apiError{code: http.StatusServiceUnavailable, errorType: "unavailable",
			err: fmt.Errorf("%d playground runs already in progress; retry in a moment", u.opts.Limits.MaxRuns)})
		return
	}
	data, aerr := u.repair(r)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "success", "data": data})
}

func (u *UI) repair(r *http.Request) (*repairData, *apiError) {
	lim := u.opts.Limits
	body, err := io.ReadAll(io.LimitReader(r.Body, lim.MaxBodyBytes+1))
	if err != nil {
		return nil, badData(http.StatusBadRequest, "reading the request body: %v", err)
	}
	if int64(len(body)) > lim.MaxBodyBytes {
		return nil, badData(http.StatusRequestEntityTooLarge, "request body exceeds the %d bytes limit", lim.MaxBodyBytes)
	}
	var req repairRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			// Not json's "Go struct field repairRequest.interval of type string".
			err = fmt.Errorf("%q must be a string, not a %s", te.Field, te.Value)
		}
		return nil, badData(http.StatusBadRequest, `request body: %v (want {"series": "...", "config": "...", "interval": "15s"})`, err)
	}
	interval := defaultInterval
	if req.Interval != "" {
		d, err := model.ParseDuration(req.Interval)
		if err != nil || time.Duration(d) < minInterval || time.Duration(d) > maxInterval {
			return nil, badData(http.StatusBadRequest, "interval %q: want a duration from %s to %s, e.g. 15s", req.Interval, model.Duration(minInterval), model.Duration(maxInterval))
		}
		interval = time.Duration(d)
	}
	cfg := u.opts.Reload().Repair
	if strings.TrimSpace(req.Config) != "" {
		if cfg, err = u.opts.ParseRepair([]byte(req.Config)); err != nil {
			return nil, badData(http.StatusBadRequest, "config: %v", err)
		}
	}
	in, err := offline.ParseInput(req.Series, lim.MaxSeries, lim.MaxSteps)
	if err != nil {
		return nil, badData(http.StatusBadRequest, "series: %v", err)
	}
	steps := 0
	for _, s := range in {
		steps = max(steps, len(s.Values))
	}
	if n := steps * len(in); n > lim.MaxSamples {
		return nil, badData(http.StatusBadRequest, "series: %d series × %d steps = %d samples, more than %d", len(in), steps, n, lim.MaxSamples)
	}
	return run(cfg, in, interval, req.Config)
}

// run sends the input through a fresh pipeline of cfg, and explains what
// happened to each input series.
func run(cfg relabel.Config, in []offline.Input, interval time.Duration, configText string) (*repairData, *apiError) {
	cfg.Collision.Warmup = 0
	rep, err := relabel.New(cfg, nil, nil) // a private merge state
	if err != nil {
		return nil, badData(http.StatusBadRequest, "config: %v", err)
	}
	tr, err := newTracer(cfg)
	if err != nil {
		return nil, badData(http.StatusBadRequest, "config: %v", err)
	}
	res, err := offline.Play(rep, in, interval)
	if err != nil {
		return nil, &apiError{code: http.StatusInternalServerError, errorType: "internal", err: err}
	}
	data := &repairData{Steps: res.Steps, Interval: model.Duration(interval).String(), Output: []apiOutput{}, Collisions: []apiCollision{}}
	outputs := map[string]offline.Output{}
	var text strings.Builder
	for _, o := range res.Output {
		outputs[o.Labels.String()] = o
		data.Output = append(data.Output, apiOutput{Labels: o.Labels.Map(), Values: values(o, interval)})
		series, vals := o.Spec(res.Steps)
		fmt.Fprintf(&text, "%s %s\n", series, vals)
	}
	data.Text = text.String()

	acts := classify(res.Changes)
	groups := map[string][]int{} // output -> inputs merged into it
	var order []string
	for i, s := range in {
		k := s.Labels.String()
		steps, traced, keep := tr.trace(s.Labels)
		_, vals := s.Spec()
		as := apiSeries{Labels: s.Labels.Map(), Values: vals, Line: s.Line, Rules: steps, Action: actionUnchanged, Output: s.Labels.Map()}
		if as.Rules == nil {
			as.Rules = []traceStep{}
		}
		a, seen := acts[k]
		switch {
		case seen && a.action == actionMerged:
			as.Action, as.Output = actionMerged, a.output.Map()
		case seen && a.action == actionRepaired:
			as.Action, as.Output = actionRepaired, a.output.Map()
		case seen && !keep:
			as.Action, as.Output = actionDropped, nil
		case seen:
			// Taken out while its merged output was held: a merge source.
			as.Action, as.Output, a.output = actionMerged, traced.Map(), traced
		}
		if (as.Action == actionRepaired || as.Action == actionMerged) && !labels.Equal(a.output, traced) {
			// The collision policy's own change (keep_distinct's marker).
			as.Rules = append(as.Rules, traceStep{Rule: "collision (" + string(cfg.Collision.Policy) + ")", Changes: diffLabels(traced, a.output)})
		}
		if as.Action == actionMerged {
			ok := a.output.String()
			if groups[ok] == nil {
				order = append(order, ok)
			}
			groups[ok] = append(groups[ok], i)
		}
		data.Series = append(data.Series, as)
	}
	// An output with a genuine series of its own: that series is a source.
	for _, ok := range order {
		for i, s := range in {
			if s.Labels.String() == ok && data.Series[i].Action == actionUnchanged {
				data.Series[i].Action = actionMerged
				groups[ok] = append(groups[ok], i)
			}
		}
	}
	for _, ok := range order {
		idx := groups[ok]
		if len(idx) < 2 {
			// A merge of one source is a repair: nothing collided.
			if ls := in[idx[0]].Labels; ls.String() != ok {
				data.Series[idx[0]].Action = actionRepaired
			} else {
				data.Series[idx[0]].Action = actionUnchanged
			}
			continue
		}
		c := apiCollision{Output: data.Series[idx[0]].Output, Values: [][2]any{}, Merge: "sum"}
		if strings.HasSuffix(c.Output[model.MetricNameLabel], "_created") {
			c.Merge = "min" // as the merge combines _created series (relabel/shard.go)
		}
		for _, i := range idx {
			c.Inputs = append(c.Inputs, in[i].Labels.Map())
		}
		if o, found := outputs[ok]; found {
			c.Values = values(o, interval)
		}
		data.Collisions = append(data.Collisions, c)
	}
	configFile := ""
	if strings.TrimSpace(configText) != "" && strings.TrimSpace(configText) != strings.TrimSpace(BuiltinConfigYAML()) {
		configFile = "rwfix.yml"
	}
	test, err := offline.TestFile("playground", configFile, interval, in, res.Output, res.Steps)
	if err != nil {
		return nil, &apiError{code: http.StatusInternalServerError, errorType: "internal", err: err}
	}
	if configFile != "" {
		test = append([]byte("# Save the playground's configuration as rwfix.yml beside this file.\n"), test...)
	}
	data.Test = string(test)
	return data, nil
}

// inputAction is what the run did to one input series, over all steps.
type inputAction struct {
	action string // merged > repaired > removed
	output labels.Labels
}

// classify reads the handler's reports: which input was merged or repaired
// into which output, and which was taken out (removed).
func classify(steps [][]remotewrite.Change) map[string]inputAction {
	rank := map[string]int{actionMerged: 3, actionRepaired: 2, remotewrite.ChangeRemoved: 1}
	out := map[string]inputAction{}
	set := func(ls labels.Labels, a inputAction) {
		k := ls.String()
		if rank[a.action] > rank[out[k].action] {
			out[k] = a
		}
	}
	for _, changes := range steps {
		for _, c := range changes {
			for _, s := range c.Sources {
				switch c.Action {
				case remotewrite.ChangeMerged:
					set(s.Labels, inputAction{action: actionMerged, output: c.Output})
				case remotewrite.ChangeRepaired:
					set(s.Labels, inputAction{action: actionRepaired, output: c.Output})
				case remotewrite.ChangeRemoved:
					set(s.Labels, inputAction{action: remotewrite.ChangeRemoved})
				}
			}
		}
	}
	return out
}

// values is a series' values as Prometheus' API gives them: [unix seconds,
// "value"], in step order.
func values(o offline.Output, interval time.Duration) [][2]any {
	out := [][2]any{}
	maxStep := int64(-1)
	for s := range o.Values {
		maxStep = max(maxStep, s)
	}
	for s := int64(0); s <= maxStep; s++ {
		v, ok := o.Values[s]
		if !ok {
			continue
		}
		out = append(out, [2]any{float64(s) * interval.Seconds(), strconv.FormatFloat(v, 'f', -1, 64)})
	}
	return out
}
