package ui

import (
	"html/template"
	"math"
	"net/http"
	"net/url"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/version"

	"github.com/rwfix/rwfix/remotewrite"
	"github.com/rwfix/rwfix/remotewrite/offline"
	"github.com/rwfix/rwfix/remotewrite/series"
)

// metrics is one gather of the registry, by family name.
type metrics map[string][]*dto.Metric

func (m metrics) value(x *dto.Metric) float64 {
	switch {
	case x.Counter != nil:
		return x.Counter.GetValue()
	case x.Gauge != nil:
		return x.Gauge.GetValue()
	case x.Untyped != nil:
		return x.Untyped.GetValue()
	}
	return 0
}

func matches(x *dto.Metric, match []string) bool {
	for i := 0; i+1 < len(match); i += 2 {
		found := false
		for _, lp := range x.Label {
			if lp.GetName() == match[i] && lp.GetValue() == match[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func labelOf(x *dto.Metric, name string) string {
	for _, lp := range x.Label {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

// sum adds up a family's series that carry the given label pairs.
func (m metrics) sum(name string, match ...string) float64 {
	t := 0.0
	for _, x := range m[name] {
		if matches(x, match) {
			t += m.value(x)
		}
	}
	return t
}

// by sums a family by one label.
func (m metrics) by(name, label string) map[string]float64 {
	out := map[string]float64{}
	for _, x := range m[name] {
		out[labelOf(x, label)] += m.value(x)
	}
	return out
}

// histogram returns a histogram family's count and sum for the given labels.
func (m metrics) histogram(name string, match ...string) (count uint64, sum float64) {
	for _, x := range m[name] {
		if x.Histogram != nil && matches(x, match) {
			count += x.Histogram.GetSampleCount()
			sum += x.Histogram.GetSampleSum()
		}
	}
	return count, sum
}

// rateWindow turns counters into per-second rates between two views of the
// page (at least minWindow apart), or since the start on the first view.
type rateWindow struct {
	mu     sync.Mutex
	t      time.Time
	totals [3]float64
}

const minWindow = 5 * time.Second

func (r *rateWindow) rates(now, start time.Time, totals [3]float64) (rates [3]float64, window time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	from, base := start, [3]float64{}
	if !r.t.IsZero() {
		from, base = r.t, r.totals
	}
	window = now.Sub(from)
	if window > 0 {
		for i := range totals {
			rates[i] = (totals[i] - base[i]) / window.Seconds()
		}
	}
	if r.t.IsZero() || now.Sub(r.t) >= minWindow {
		r.t, r.totals = now, totals
	}
	return rates, window
}

type upstreamView struct {
	Name, URL, Protocol, Fallback string
	LastCode                      string
	LastMessage                   string
	LastAgo                       string
	Requests                      float64
	ErrorRate                     string
	Latency                       string
}

type kv struct {
	Key   string
	Value float64
}

type rejectView struct {
	Reason   string
	Count    float64
	Messages []stamped
}

type exampleView struct {
	Ago     string
	Action  string
	Class   string
	Sources []string
	Output  string
	Values  string
	Link    string
}

type statusView struct {
	Version, Revision, Branch, BuildDate, GoVersion string
	Started                                         string
	Uptime                                          string
	Ready                                           bool
	ConfigFile                                      string
	ReloadTime                                      string
	ReloadError                                     string
	Requests, Samples, Series                       float64
	RequestRate, SampleRate, SeriesRate             string
	RateWindow                                      string
	Upstreams                                       []upstreamView
	Repaired, Dropped                               []kv
	Collisions, CollisionsUnrepaired                float64
	MergedSamples, MergeEmitted                     float64
	MergeSeries, MergeSources, MergePending         float64
	Rejected                                        []rejectView
	Examples                                        []exampleView
}

func (u *UI) serveStatus(w http.ResponseWriter, _ *http.Request) {
	v, err := u.status(time.Now())
	if err != nil {
		http.Error(w, "reading the metrics: "+err.Error(), http.StatusInternalServerError)
		return
	}
	u.render(w, "status", pageData{Page: "status", Data: v})
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return now.Sub(t).Truncate(time.Second).String() + " ago"
}

func sortedKV(m map[string]float64) []kv {
	out := make([]kv, 0, len(m))
	for k, v := range m {
		out = append(out, kv{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func (u *UI) status(now time.Time) (*statusView, error) {
	fams, err := u.opts.Gatherer.Gather()
	if err != nil && len(fams) == 0 {
		return nil, err
	}
	m := metrics{}
	for _, f := range fams {
		m[f.GetName()] = f.Metric
	}
	st := u.opts.Reload()
	v := &statusView{
		Version: version.Version, Revision: version.Revision, Branch: version.Branch, BuildDate: version.BuildDate,
		GoVersion: runtime.Version(), Started: u.opts.Start.UTC().Format(time.RFC3339),
		Uptime: now.Sub(u.opts.Start).Truncate(time.Second).String(), Ready: u.opts.Ready(),
		ConfigFile: st.File, ReloadTime: ago(now, st.Time), ReloadError: st.Error,
		Requests: m.sum("rwfix_requests_total"), Samples: m.sum("rwfix_samples_received_total"),
		Series:     m.sum("rwfix_series_received_total"),
		Repaired:   sortedKV(m.by("rwfix_series_repaired_total", "rule")),
		Dropped:    sortedKV(m.by("rwfix_series_dropped_total", "rule")),
		Collisions: m.sum("rwfix_collisions_total"), CollisionsUnrepaired: m.sum("rwfix_collisions_unrepaired_total"),
		MergedSamples: m.sum("rwfix_merged_samples_total"), MergeEmitted: m.sum("rwfix_merge_emitted_samples_total"),
		MergeSeries: m.sum("rwfix_merge_state_series"), MergeSources: m.sum("rwfix_merge_state_sources"),
		MergePending: m.sum("rwfix_merge_pending_series"),
	}
	if v.ConfigFile == "" {
		v.ConfigFile = "none (built-in defaults and flags)"
	}
	rates, window := u.rates.rates(now, u.opts.Start, [3]float64{v.Requests, v.Samples, v.Series})
	v.RequestRate, v.SampleRate, v.SeriesRate = fmtRate(rates[0]), fmtRate(rates[1]), fmtRate(rates[2])
	v.RateWindow = window.Truncate(time.Second).String()
	for _, up := range st.Upstreams {
		v.Upstreams = append(v.Upstreams, u.upstreamView(m, now, up))
	}
	for _, r := range sortedKV(m.by("rwfix_requests_rejected_total", "reason")) {
		v.Rejected = append(v.Rejected, rejectView{Reason: r.Key, Count: r.Value, Messages: u.opts.Recorder.rejectMessages(r.Key)})
	}
	tr, err := newTracer(st.Repair)
	if err != nil {
		tr = nil
	}
	v.Examples = examplesOf(now, u.opts.Recorder.recent(), tr)
	return v, nil
}

func fmtRate(r float64) string { return strconv.FormatFloat(r, 'f', 2, 64) }

func (u *UI) upstreamView(m metrics, now time.Time, up Upstream) upstreamView {
	uv := upstreamView{Name: up.Name, URL: up.URL, Protocol: "as received (RW 1.0 or 2.0)", LastCode: "none yet", LastAgo: "never"}
	total, failed := 0.0, 0.0
	for _, x := range m["rwfix_upstream_requests_total"] {
		if labelOf(x, "upstream") != up.Name {
			continue
		}
		n := m.value(x)
		total += n
		if c := labelOf(x, "code"); len(c) != 3 || c[0] != '2' {
			failed += n
		}
	}
	uv.Requests = total
	uv.ErrorRate = "–"
	if total > 0 {
		uv.ErrorRate = strconv.FormatFloat(100*failed/total, 'f', 1, 64) + "%"
	}
	uv.Latency = "–"
	if c, s := m.histogram("rwfix_upstream_request_duration_seconds", "upstream", up.Name); c > 0 {
		uv.Latency = (time.Duration(s / float64(c) * float64(time.Second))).Round(time.Microsecond).String() + " avg"
	}
	s, ok := u.opts.Recorder.upstream(up.Name)
	if ok && !s.LastTime.IsZero() {
		uv.LastCode = strconv.Itoa(s.Last.Code)
		if s.Last.Code == 0 {
			uv.LastCode = "no answer"
		}
		uv.LastMessage = s.Last.Message
		uv.LastAgo = ago(now, s.LastTime) + " (" + s.Last.Duration.Round(time.Microsecond).String() + ", RW " + s.Last.Protocol + ")"
		uv.Protocol = "RW " + s.Last.Protocol + " (as received)"
	}
	if ok && s.Fallback != "" {
		uv.Protocol = "RW 1.0 (fallen back from 2.0)"
		uv.Fallback = s.Fallback + ", " + ago(now, s.FallbackTime)
	} else if m.sum("rwfix_upstream_protocol_fallbacks_total", "upstream", up.Name) > 0 {
		uv.Protocol = "RW 1.0 (fallen back from 2.0)"
	}
	return uv
}

// examplesOf describes recent changes, newest first, each with a
// playground link that replays its input series. Sources taken out of one
// request for one held merged output are shown together.
func examplesOf(now time.Time, examples []example, tr *tracer) []exampleView {
	var out []exampleView
	var inputs []string // the playground input of each example
	for i, e := range examples {
		c := e.Change
		ev := exampleView{Ago: ago(now, e.Time), Action: c.Action, Class: c.Action,
			Output: offline.SeriesString(c.Output), Values: fmtSamples(c.Samples)}
		if c.Action == remotewrite.ChangeRemoved && len(c.Sources) == 1 && tr != nil {
			ev.Action, ev.Class = "dropped", "dropped"
			if _, held, keep := tr.trace(c.Sources[0].Labels); keep {
				ev.Action, ev.Class, ev.Output = "merge sources (output held)", "merged", offline.SeriesString(held)
			}
		}
		if c.Action == remotewrite.ChangeEmitted {
			ev.Action, ev.Class = "merged (held samples sent)", "merged"
		}
		n := len(out) - 1
		if c.Action == remotewrite.ChangeRemoved && n >= 0 && ev.Class == "merged" && out[n].Output == ev.Output &&
			out[n].Action == ev.Action && examples[i-1].Time.Equal(e.Time) {
			ev, out = out[n], out[:n] // one request, one output: one example; inputs[n] grows
		} else {
			inputs = append(inputs, "")
		}
		for _, s := range c.Sources {
			ev.Sources = append(ev.Sources, offline.SeriesString(s.Labels)+" "+fmtSamples(s.Samples))
			inputs[len(inputs)-1] += offline.SeriesString(s.Labels) + " " + promtoolValues(s.Samples) + "\n"
		}
		out = append(out, ev)
	}
	for i := range out {
		if in := inputs[i]; in != "" {
			out[i].Link = "/playground?" + url.Values{"series": {in}}.Encode()
		}
	}
	return out
}

func fmtSamples(s []series.Sample) string {
	parts := make([]string, 0, len(s))
	for _, x := range s {
		parts = append(parts, strconv.FormatFloat(x.V, 'g', -1, 64)+" @"+time.UnixMilli(x.T).UTC().Format("15:04:05"))
	}
	return strings.Join(parts, ", ")
}

// promtoolValues are samples as one value per step (stale markers as
// stale), for the playground.
func promtoolValues(s []series.Sample) string {
	parts := make([]string, 0, len(s))
	for _, x := range s {
		if math.IsNaN(x.V) {
			parts = append(parts, "stale")
			continue
		}
		parts = append(parts, strconv.FormatFloat(x.V, 'g', -1, 64))
	}
	return strings.Join(parts, " ")
}

var funcs = template.FuncMap{
	"num": func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) },
}
