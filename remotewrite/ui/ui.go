package ui

import (
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v2"

	"github.com/rwfix/rwfix/relabel"
)

//go:embed templates static
var assets embed.FS

// Options wire the page to the process.
type Options struct {
	Gatherer prometheus.Gatherer // the process' metrics
	Recorder *Recorder           // also the handler's Observer
	Ready    func() bool
	Reload   func() ReloadStatus
	// Config is the running configuration as YAML, secrets hidden.
	Config func() ([]byte, error)
	// ParseRepair reads the repair part of a pasted configuration.
	ParseRepair func([]byte) (relabel.Config, error)
	Limits      Limits
	Start       time.Time
}

// ReloadStatus is the configuration state the page shows.
type ReloadStatus struct {
	File      string // "" : no file, the defaults and flags
	Time      time.Time
	Error     string // of the last load; "" when it succeeded
	Upstreams []Upstream
	Repair    relabel.Config // running
}

// Upstream is one configured upstream, URL without credentials.
type Upstream struct{ Name, URL string }

// UI serves the page.
type UI struct {
	opts  Options
	tmpl  map[string]*template.Template
	runs  chan struct{}
	rates rateWindow
}

// New returns the page's handlers.
func New(o Options) *UI {
	if o.Limits == (Limits{}) {
		o.Limits = DefaultLimits()
	}
	if o.Recorder == nil {
		o.Recorder = NewRecorder()
	}
	if o.Start.IsZero() {
		o.Start = time.Now()
	}
	u := &UI{opts: o, tmpl: map[string]*template.Template{}, runs: make(chan struct{}, max(o.Limits.MaxRuns, 1))}
	for _, page := range []string{"status", "config", "playground"} {
		u.tmpl[page] = template.Must(template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+page+".html"))
	}
	return u
}

// Register adds the page's routes to mux.
func (u *UI) Register(mux *http.ServeMux) {
	static, _ := fs.Sub(assets, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServer(http.FS(static))))
	mux.HandleFunc("GET /{$}", u.serveStatus)
	mux.HandleFunc("GET /config", u.serveConfig)
	mux.HandleFunc("GET /playground", u.servePlayground)
	mux.HandleFunc("/api/v1/repair", u.serveRepair)
}

func (u *UI) render(w http.ResponseWriter, page string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := u.tmpl[page].Execute(w, data); err != nil {
		http.Error(w, "rendering the page: "+err.Error(), http.StatusInternalServerError)
	}
}

type pageData struct {
	Page string
	Data any
}

func (u *UI) serveConfig(w http.ResponseWriter, _ *http.Request) {
	y, err := u.opts.Config()
	if err != nil {
		http.Error(w, "rendering the configuration: "+err.Error(), http.StatusInternalServerError)
		return
	}
	st := u.opts.Reload()
	u.render(w, "config", pageData{Page: "config", Data: map[string]any{"YAML": string(y), "File": st.File}})
}

// BuiltinConfigYAML is the built-in repair configuration as YAML.
func BuiltinConfigYAML() string {
	b, _ := yaml.Marshal(relabel.DefaultConfig())
	return string(b)
}

func (u *UI) servePlayground(w http.ResponseWriter, _ *http.Request) {
	running, err := yaml.Marshal(u.opts.Reload().Repair)
	if err != nil {
		http.Error(w, "rendering the configuration: "+err.Error(), http.StatusInternalServerError)
		return
	}
	u.render(w, "playground", pageData{Page: "playground", Data: map[string]any{
		"Running": string(running), "Limits": u.opts.Limits,
	}})
}
