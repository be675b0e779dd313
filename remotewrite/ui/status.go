package ui

import (
	"html/template"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/version"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"

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

// refreshEvery is how often the status page reloads itself.
const refreshEvery = 10 * time.Second

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
	Seen    string // "12× since 5m0s ago" for a change seen more than once
	Action  string
	Class   string
	Sources []string
	Output  string
	Values  string
	Link    string
}

type statusView struct {
	ErrorWindow                                     string
	Refresh                                         int // seconds between reloads of the page
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
	v.ErrorWindow, v.Refresh = model.Duration(errorWindow).String(), int(refreshEvery/time.Second)
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
	uv.Requests = m.sum("rwfix_upstream_requests_total", "upstream", up.Name)
	s, ok := u.opts.Recorder.upstream(up.Name)
	// The error rate over the last minutes, as the rates above: a lifetime
	// ratio would hide an outage behind the hours before it.
	uv.ErrorRate = "–"
	if total, failed := s.recentErrors(now); total > 0 {
		uv.ErrorRate = strconv.FormatFloat(100*float64(failed)/float64(total), 'f', 1, 64) + "%"
	}
	uv.Latency = "–"
	if c, s := m.histogram("rwfix_upstream_request_duration_seconds", "upstream", up.Name); c > 0 {
		uv.Latency = (time.Duration(s / float64(c) * float64(time.Second))).Round(time.Microsecond).String() + " avg"
	}
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

// Example actions, as the status page names them.
const (
	exRepaired = "repaired"
	exMerged   = "merged"
	exHeld     = "held for the merge"
	exSent     = "merged (held samples sent)"
	exDropped  = "dropped"
)

// examplesOf describes the recent changes, most recently seen first, each
// with a playground link that replays its input series. What the rules did
// not change is left out: a genuine series whose samples the merge only
// held, with nothing else landing on it. The sources of one output that
// the merge holds are one example.
func examplesOf(now time.Time, examples []example, tr *tracer) []exampleView {
	type row struct {
		view    exampleView
		sources []remotewrite.ChangedSeries
		changed bool // a rule changed a source: worth showing
	}
	var (
		rows    []*row
		held    = map[string]*row{} // by output
		outputs = map[string]bool{} // outputs of the rows that show a merge
	)
	seen := func(ev *exampleView, e example) {
		ev.Ago = ago(now, e.Time)
		if e.Count > 1 {
			ev.Seen = strconv.Itoa(e.Count) + "× since " + ago(now, e.First)
		}
	}
	for _, e := range examples {
		c := e.Change
		r := &row{sources: c.Sources}
		r.view = exampleView{Output: offline.SeriesString(c.Output), Values: fmtSamples(c.Samples)}
		seen(&r.view, e)
		for _, s := range c.Sources {
			if !labels.Equal(s.Labels, c.Output) {
				r.changed = true
			}
		}
		switch c.Action {
		case remotewrite.ChangeRepaired:
			r.view.Action = exRepaired
		case remotewrite.ChangeMerged:
			switch {
			case len(c.Sources) > 1:
				r.view.Action = exMerged
			case r.changed:
				r.view.Action = exRepaired // one source: nothing to sum
			default:
				continue // a genuine series alone; the merge only held its samples
			}
		case remotewrite.ChangeEmitted:
			r.view.Action, r.changed = exSent, true
		case remotewrite.ChangeRemoved:
			if tr == nil || len(c.Sources) != 1 {
				r.view.Action, r.view.Output = exDropped, ""
				break
			}
			src := c.Sources[0]
			if _, out, keep := tr.trace(src.Labels); !keep {
				r.view.Action, r.view.Output = exDropped, ""
			} else {
				// A merge source whose output the merge holds: with the
				// other held sources of that output, one example.
				k := out.String()
				g := held[k]
				if g == nil {
					g = &row{view: exampleView{Action: exHeld, Output: offline.SeriesString(out), Values: "held: sent later, merged"}}
					seen(&g.view, e)
					held[k] = g
					rows = append(rows, g)
				}
				if !slices.ContainsFunc(g.sources, func(s remotewrite.ChangedSeries) bool { return labels.Equal(s.Labels, src.Labels) }) {
					g.sources = append(g.sources, src)
				}
				g.changed = g.changed || !labels.Equal(src.Labels, out)
				continue
			}
		}
		rows = append(rows, r)
	}
	for _, r := range rows {
		if r.changed && (r.view.Action == exMerged || r.view.Action == exHeld) {
			outputs[r.view.Output] = true
		}
	}
	var out []exampleView
	for _, r := range rows {
		switch {
		case !r.changed:
			continue
		case r.view.Action == exSent && !outputs[r.view.Output]:
			continue // an output not known to merge anything: maybe a genuine series alone
		case r.view.Action == exHeld && len(r.sources) > 1:
			r.view.Action = exHeld + " (sources summed)"
		}
		r.view.Class = "merged"
		switch r.view.Action {
		case exRepaired:
			r.view.Class = "repaired"
		case exDropped:
			r.view.Class = "dropped"
		}
		for _, s := range r.sources {
			r.view.Sources = append(r.view.Sources, offline.SeriesString(s.Labels)+" "+fmtSamples(s.Samples))
		}
		r.view.Link = playgroundLink(r.sources)
		out = append(out, r.view)
		if len(out) == maxExamples {
			break
		}
	}
	return out
}

// playgroundLink replays sources in the playground: one line per series,
// its samples in timestamp order on the steps of every timestamp the
// sources have (_ where a series has none), the interval their smallest
// spacing. "" without sources.
func playgroundLink(sources []remotewrite.ChangedSeries) string {
	sources = oneSourcePerSeries(sources)
	var ts []int64
	for _, s := range sources {
		for _, x := range s.Samples {
			ts = append(ts, x.T)
		}
	}
	if len(ts) == 0 {
		return ""
	}
	slices.Sort(ts)
	ts = slices.Compact(ts)
	var in strings.Builder
	for _, s := range sources {
		vals := make([]string, len(ts))
		for i := range vals {
			vals[i] = "_"
		}
		for _, x := range s.Samples {
			i, _ := slices.BinarySearch(ts, x.T)
			vals[i] = promtoolValue(x.V)
		}
		in.WriteString(offline.SeriesString(s.Labels) + " " + strings.Join(vals, " ") + "\n")
	}
	q := url.Values{"series": {in.String()}}
	if len(ts) > 1 {
		step := ts[len(ts)-1] - ts[0]
		for i := 1; i < len(ts); i++ {
			step = min(step, ts[i]-ts[i-1])
		}
		if d := time.Duration(step) * time.Millisecond; d >= minInterval && d <= maxInterval && d%time.Second == 0 {
			q.Set("interval", model.Duration(d).String())
		}
	}
	return "/playground?" + q.Encode()
}

func fmtSamples(s []series.Sample) string {
	parts := make([]string, 0, len(s))
	for _, x := range s {
		parts = append(parts, strconv.FormatFloat(x.V, 'g', -1, 64)+" @"+time.UnixMilli(x.T).UTC().Format("15:04:05"))
	}
	return strings.Join(parts, ", ")
}

// promtoolValue is a sample's value in promtool's notation (a stale marker
// as stale), for the playground.
func promtoolValue(v float64) string {
	if value.IsStaleNaN(v) {
		return "stale"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

var funcs = template.FuncMap{
	"num": func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) },
}
