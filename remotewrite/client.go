package remotewrite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/version"

	"github.com/rwfix/rwfix/remotewrite/wire"
)

// UpstreamConfig is one upstream in the configuration file: a remote-write
// URL plus Prometheus' HTTPClientConfig (basic_auth, authorization, oauth2,
// tls_config, proxy_url, http_headers, ...), inline as in Prometheus'
// remote_write block.
type UpstreamConfig struct {
	// Name labels the upstream's metrics and logs. Defaults to the URL's host.
	Name    string            `yaml:"name,omitempty"`
	URL     *config.URL       `yaml:"url"`
	Timeout model.Duration    `yaml:"timeout,omitempty"`
	Headers map[string]string `yaml:"headers,omitempty"`
	// ForwardHeaders are headers of the incoming request copied to this
	// upstream, e.g. X-Scope-OrgID for a multi-tenant Mimir or Cortex. No
	// incoming header is forwarded unless listed here — Authorization
	// included.
	ForwardHeaders []string `yaml:"forward_headers,omitempty"`

	HTTPClientConfig config.HTTPClientConfig `yaml:",inline"`
}

// DefaultUpstreamTimeout is Prometheus' remote_timeout default.
const DefaultUpstreamTimeout = 30 * time.Second

// Validate checks the upstream and fills in defaults.
func (c *UpstreamConfig) Validate() error {
	if c.URL == nil || c.URL.URL == nil || c.URL.Host == "" {
		return errors.New("url is required and must be absolute (http://host:port/path)")
	}
	if s := c.URL.Scheme; s != "http" && s != "https" {
		return fmt.Errorf("url scheme %q: must be http or https", s)
	}
	if c.Name == "" {
		c.Name = c.URL.Host
	}
	if c.Timeout == 0 {
		c.Timeout = model.Duration(DefaultUpstreamTimeout)
	}
	if c.Timeout < 0 {
		return errors.New("timeout must be positive")
	}
	for _, h := range c.ForwardHeaders {
		if setByRwfix(h) {
			return fmt.Errorf("forward_headers: %q is set by rwfix and cannot be forwarded", h)
		}
	}
	for h := range c.Headers {
		if setByRwfix(h) {
			return fmt.Errorf("header %q is set by rwfix and cannot be configured", h)
		}
	}
	return c.HTTPClientConfig.Validate()
}

// setByRwfix reports whether rwfix sets header h on every upstream request
// itself, so that neither the configuration nor the sender may.
func setByRwfix(h string) bool {
	switch strings.ToLower(h) {
	case "content-type", "content-encoding", "x-prometheus-remote-write-version", "content-length":
		return true
	}
	return false
}

// Upstream is one remote-write destination.
type Upstream struct {
	name    string
	url     string
	timeout time.Duration
	headers map[string]string
	forward []string
	client  *http.Client

	// v1Only is set once the upstream has shown that it does not speak RW 2.0
	// (a 415, or a 2xx without the RW 2.0 Written headers); from then on RW
	// 2.0 batches are converted to RW 1.0 for it.
	v1Only atomic.Bool
}

// NewUpstream builds an upstream from its validated configuration.
func NewUpstream(cfg UpstreamConfig) (*Upstream, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	client, err := config.NewClientFromConfig(cfg.HTTPClientConfig, "rwfix_"+cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", cfg.Name, err)
	}
	return &Upstream{
		name:    cfg.Name,
		url:     cfg.URL.String(),
		timeout: time.Duration(cfg.Timeout),
		headers: cfg.Headers,
		forward: cfg.ForwardHeaders,
		client:  client,
	}, nil
}

// Name is the upstream's name in metrics and logs.
func (u *Upstream) Name() string { return u.name }

// reply is what one upstream answered.
type reply struct {
	upstream   string
	code       int    // HTTP status; 0 when no answer came (err is set)
	msg        string // the upstream's body, trimmed, for the sender's error
	retryAfter string
	err        error // network error or timeout
	timeout    bool
	written    remoteapi.WriteResponseStats
	confirmed  bool // the RW 2.0 Written headers were present
}

func (r reply) ok() bool { return r.err == nil && r.code/100 == 2 }

// maxErrorBody bounds how much of an upstream's error body is kept.
const maxErrorBody = 1024

// post sends one compressed body in the given protocol and reads the answer.
func (u *Upstream) post(ctx context.Context, proto remoteapi.WriteMessageType, body []byte, in http.Header) reply {
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	r := reply{upstream: u.name}
	// The body is a pooled buffer: the transport may still read a request
	// body after the response came (it closes it, maybe later, in another
	// goroutine), so reads are cut off once this attempt is over.
	rd := &guardedReader{b: body}
	defer rd.stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.url, rd)
	if err != nil {
		r.err = err
		return r
	}
	req.ContentLength = int64(len(body))
	for _, k := range u.forward {
		if v := in.Values(k); len(v) > 0 {
			req.Header[http.CanonicalHeaderKey(k)] = v
		}
	}
	for k, v := range u.headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Encoding", string(remoteapi.SnappyBlockCompression))
	req.Header.Set("User-Agent", version.ComponentUserAgent("rwfix")) // at send time: main sets the version in its init
	req.Header.Set("Content-Type", wire.ContentType(proto))
	if proto == ProtoV2 {
		req.Header.Set("X-Prometheus-Remote-Write-Version", "2.0.0")
	} else {
		req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	}
	resp, err := u.client.Do(req)
	if err != nil {
		r.err = err
		r.timeout = errors.Is(err, context.DeadlineExceeded) || isTimeout(err)
		return r
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // let the connection be reused
	r.code = resp.StatusCode
	r.msg = strings.TrimSpace(string(msg))
	r.retryAfter = resp.Header.Get("Retry-After")
	r.written, r.confirmed = parseWritten(resp.Header)
	return r
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

func parseWritten(h http.Header) (s remoteapi.WriteResponseStats, confirmed bool) {
	for _, f := range []struct {
		name string
		dst  *int
	}{
		{"X-Prometheus-Remote-Write-Samples-Written", &s.Samples},
		{"X-Prometheus-Remote-Write-Histograms-Written", &s.Histograms},
		{"X-Prometheus-Remote-Write-Exemplars-Written", &s.Exemplars},
	} {
		if v := h.Get(f.name); v != "" {
			confirmed = true
			*f.dst, _ = strconv.Atoi(v)
		}
	}
	return s, confirmed
}

// merge turns the upstreams' answers into the one answer for the sender.
//
//   - every upstream 2xx: 204;
//   - any upstream 5xx, network error or timeout: 5xx (502 for a network
//     error, 504 for a timeout, else the upstream's code), so that the sender
//     retries the whole batch. Upstreams that had accepted it see it again and
//     accept the identical repeat (at-least-once);
//   - else any 429: 429 with the largest Retry-After;
//   - else the first 4xx, with the upstream's message: the input is bad and
//     a retry cannot succeed.
//
// Retryable answers win over a 4xx because a retry may succeed on the
// failing upstream; if the 4xx upstream rejects again the sender then drops.
func merge(replies []reply) (code int, msg, retryAfter string) {
	var fiveXX, tooMany, fourXX *reply
	for i := range replies {
		r := &replies[i]
		switch {
		case r.ok():
		case r.err != nil || r.code/100 == 5 || r.code/100 != 4:
			if fiveXX == nil {
				fiveXX = r
			}
		case r.code == http.StatusTooManyRequests:
			if tooMany == nil || retryAfterSeconds(r.retryAfter) > retryAfterSeconds(tooMany.retryAfter) {
				tooMany = r
			}
		default:
			if fourXX == nil {
				fourXX = r
			}
		}
	}
	switch {
	case fiveXX != nil:
		r := fiveXX
		switch {
		case r.timeout:
			return http.StatusGatewayTimeout, fmt.Sprintf("upstream %s: timeout: %v", r.upstream, r.err), ""
		case r.err != nil:
			return http.StatusBadGateway, fmt.Sprintf("upstream %s: %v", r.upstream, r.err), ""
		case r.code/100 == 5:
			return r.code, fmt.Sprintf("upstream %s: HTTP %d: %s", r.upstream, r.code, r.msg), r.retryAfter
		default: // 1xx/3xx: not a valid remote-write answer.
			return http.StatusBadGateway, fmt.Sprintf("upstream %s: unexpected HTTP %d: %s", r.upstream, r.code, r.msg), ""
		}
	case tooMany != nil:
		return http.StatusTooManyRequests, fmt.Sprintf("upstream %s: HTTP 429: %s", tooMany.upstream, tooMany.msg), tooMany.retryAfter
	case fourXX != nil:
		return fourXX.code, fmt.Sprintf("upstream %s: HTTP %d: %s", fourXX.upstream, fourXX.code, fourXX.msg), ""
	}
	return http.StatusNoContent, "", ""
}

// retryAfterSeconds reads a Retry-After value (seconds or an HTTP date).
func retryAfterSeconds(v string) float64 {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		return float64(s)
	}
	if t, err := http.ParseTime(v); err == nil {
		return time.Until(t).Seconds()
	}
	return 0
}

// UnmarshalYAML applies Prometheus' HTTP client defaults before decoding.
func (c *UpstreamConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = UpstreamConfig{HTTPClientConfig: config.DefaultHTTPClientConfig}
	type plain UpstreamConfig
	return unmarshal((*plain)(c))
}

// guardedReader reads b until stop is called; after that it reads nothing, so
// that b can be reused.
type guardedReader struct {
	mu   sync.Mutex
	b    []byte
	off  int
	done bool
}

func (g *guardedReader) Read(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done {
		return 0, errors.New("request body no longer available")
	}
	if g.off >= len(g.b) {
		return 0, io.EOF
	}
	n := copy(p, g.b[g.off:])
	g.off += n
	return n, nil
}

func (g *guardedReader) Close() error { return nil }

func (g *guardedReader) stop() {
	g.mu.Lock()
	g.done = true
	g.mu.Unlock()
}
