package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	"github.com/klauspost/compress/s2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"

	"github.com/rwfix/rwfix/remotewrite/rwtest"
)

// newBrowser starts headless Chromium (Debian's chromium) for one test,
// with a user-data-dir of its own; the test's cleanup stops it. Every
// action runs under the returned context's deadline.
func newBrowser(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	bin := needBinary(t, "Chromium (apt-get install chromium)", os.Getenv("RWFIX_CHROMIUM"), "chromium", "/usr/bin/chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox, // root in a container has no user namespace for the sandbox
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancelTimeout := context.WithTimeout(context.Background(), timeout)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		_ = chromedp.Cancel(bctx) // closes the browser
		cancelBrowser()
		cancelAlloc() // kills it, if it did not close
		cancelTimeout()
	})
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("starting Chromium (%s): %v", bin, err)
	}
	return bctx
}

// pageText is the text of the element that sel finds on the page.
func pageText(ctx context.Context, t *testing.T, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("reading %s: %v", sel, err)
	}
	return s
}

// The playground's LiteLLM case: a "None" series that lands on a genuine
// "500" one, and an untouched "200".
const playgroundSeries = `litellm_proxy_total_requests_metric_total{status_code="None", user="a"} 1 2 3
litellm_proxy_total_requests_metric_total{status_code="500", user="a"} 10 10 11
litellm_proxy_total_requests_metric_total{status_code="200", user="a"} 5 6 7
`

func TestWebPageInBrowser(t *testing.T) {
	ctx := newBrowser(t, 3*time.Minute)
	up := rwtest.NewRecordingUpstream(t)
	base, _ := startRwfix(t, "--upstream.url="+up.URL)

	// Real traffic: LiteLLM-like series, a tenth of them "None", each with a
	// genuine "500" twin.
	bodies, _ := rwtest.Workload{Series: 400, BatchSize: 100, Rounds: 2, NoneRatio: 0.1, GenuineMore: true}.RW1()
	for i, b := range bodies {
		if code := postWrite(t, base, rwtest.ProtoV1, b); code/100 != 2 {
			t.Fatalf("request %d: rwfix answered %d", i, code)
		}
	}
	repaired := metricValue(t, base, "rwfix_series_repaired_total", `rule="litellm"`)
	if repaired == 0 {
		t.Fatal("the traffic repaired nothing")
	}

	// The status page: the upstream and the repair counts.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	upstreams, repairs, examples := pageText(ctx, t, "#upstreams"), pageText(ctx, t, "#repairs"), pageText(ctx, t, "#examples")
	upHost := strings.TrimPrefix(strings.TrimSuffix(up.URL, "/api/v1/write"), "http://")
	if !strings.Contains(upstreams, upHost) || !strings.Contains(upstreams, "204") {
		t.Errorf("status page, upstreams: want %s answering 204, got:\n%s", upHost, upstreams)
	}
	if want := fmt.Sprintf("litellm\t%g", repaired); !strings.Contains(repairs, want) {
		t.Errorf("status page, repairs: want %q, got:\n%s", want, repairs)
	}
	if !strings.Contains(examples, `status_code="None"`) || !strings.Contains(examples, "playground") {
		t.Errorf("status page, examples: no None series with a playground link:\n%s", examples)
	}

	// The playground: paste, run, read the merge.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/playground"),
		chromedp.SetValue(chromedp.CSS("#series"), playgroundSeries),
		chromedp.Click(chromedp.CSS("#run")),
		chromedp.WaitVisible(chromedp.CSS("#result")),
	); err != nil {
		t.Fatal(err)
	}
	collisions, output, table := pageText(ctx, t, "#collisions"), pageText(ctx, t, "#output-text"), pageText(ctx, t, "#series-table")
	shared, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	checkPlayground := func(when, collisions, output, table string) {
		t.Helper()
		merged := `litellm_proxy_total_requests_metric_total{status_code="500", user="a"} 11 12 14`
		if !strings.Contains(output, merged) || !strings.Contains(output, `status_code="200", user="a"} 5 6 7`) || strings.Contains(output, `"None"`) {
			t.Errorf("%s: output: want %q and the untouched 200 series, no None; got:\n%s", when, merged, output)
		}
		for _, want := range []string{`status_code="None", user="a"}`, `status_code="500", user="a"}`, "11 @0s, 12 @15s, 14 @30s"} {
			if !strings.Contains(collisions, want) {
				t.Errorf("%s: collision group lacks %q:\n%s", when, want, collisions)
			}
		}
		if strings.Count(table, "merged") != 2 || !strings.Contains(table, "unchanged") || !strings.Contains(table, "litellm") {
			t.Errorf("%s: series table: want two merged (by the litellm rule) and one unchanged:\n%s", when, table)
		}
	}
	checkPlayground("after Run", collisions, output, table)
	t.Logf("playground collision group: %s", strings.Join(strings.Fields(collisions), " "))

	// The shared link gives the same page.
	if !strings.Contains(shared, "series=") {
		t.Fatalf("the URL does not carry the state: %s", shared)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(shared), chromedp.WaitVisible(chromedp.CSS("#result"))); err != nil {
		t.Fatal(err)
	}
	collisions2, output2, table2 := pageText(ctx, t, "#collisions"), pageText(ctx, t, "#output-text"), pageText(ctx, t, "#series-table")
	checkPlayground("shared link", collisions2, output2, table2)
	if collisions2 != collisions || output2 != output || table2 != table {
		t.Errorf("the shared link shows another result")
	}
	if path := os.Getenv("RWFIX_SCREENSHOT"); path != "" {
		// The picture in README.md and docs/web.md: RWFIX_SCREENSHOT=testdata/ui/playground.png.
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, path, string(png))
	}

	// Bad input: the page says what and where.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/playground"),
		chromedp.SetValue(chromedp.CSS("#series"), "ok 1\nbad{ 1 2\n"),
		chromedp.Click(chromedp.CSS("#run")),
		chromedp.WaitVisible(chromedp.CSS("#error")),
	); err != nil {
		t.Fatal(err)
	}
	if msg := pageText(ctx, t, "#error"); !strings.Contains(msg, "line 2") {
		t.Errorf("bad input: the page shows %q, want the line", msg)
	}

	// Markup pasted into a label value stays text: the page builds its nodes
	// with textContent, never by gluing strings into innerHTML.
	const markup = `<img src=x onerror="document.title='pwned'"><b>x</b>`
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/playground"),
		chromedp.SetValue(chromedp.CSS("#series"), "litellm_proxy_total_requests_metric_total{status_code=\"None\", user=\""+
			strings.ReplaceAll(markup, `"`, `\"`)+"\"} 1 2\nlitellm_proxy_total_requests_metric_total{status_code=\"500\", user=\""+
			strings.ReplaceAll(markup, `"`, `\"`)+"\"} 3 4\n"),
		chromedp.Click(chromedp.CSS("#run")),
		chromedp.WaitVisible(chromedp.CSS("#result")),
	); err != nil {
		t.Fatal(err)
	}
	injected, err := chromedp.Run(ctx, chromedp.Evaluate[int](`[...document.querySelectorAll("#result img, #result b")].filter((e) => e.tagName === "IMG" || e.textContent === "x").length`))
	if err != nil {
		t.Fatal(err)
	}
	title, err := chromedp.Run(ctx, chromedp.Title())
	if err != nil {
		t.Fatal(err)
	}
	if table := pageText(ctx, t, "#series-table"); injected != 0 || title == "pwned" || !strings.Contains(table, "<b>x</b>") {
		t.Errorf("pasted markup became HTML (%d injected elements, title %q), or its text is missing:\n%s", injected, title, table)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(shared), chromedp.WaitVisible(chromedp.CSS("#result"))); err != nil {
		t.Fatal(err)
	}

	// Export, and run the file through `rwfix test rules`.
	dl := t.TempDir()
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior,
		browser.SetDownloadBehaviorParams{Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dl}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#export"))); err != nil {
		t.Fatal(err)
	}
	exported := filepath.Join(dl, "playground_test.yml")
	waitFor(t, "the exported file", 30*time.Second, func() (bool, error) {
		_, err := os.Stat(exported)
		return err == nil, err
	})
	out, err := exec.Command(rwfixBin, "test", "rules", exported).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		b, _ := os.ReadFile(exported)
		t.Errorf("rwfix test rules on the exported file: %v\n%s\n--- file:\n%s", err, out, b)
	}
}

// TestWebPageHidesSecrets runs rwfix with credentials in its configuration
// (basic auth, a bearer token, a password in the URL) and reads the status
// page and the configuration page.
func TestWebPageHidesSecrets(t *testing.T) {
	up := rwtest.NewRecordingUpstream(t)
	u := strings.Replace(up.URL, "http://", "http://user:url-pass-1@", 1)
	cfg := filepath.Join(t.TempDir(), "rwfix.yml")
	writeFile(t, cfg, `upstreams:
  - name: basic
    url: `+u+`
    basic_auth: {username: u, password: basic-pass-2}
  - name: bearer
    url: `+up.URL+`
    authorization: {credentials: bearer-token-3}
`)
	base, _ := startRwfix(t, "--config.file="+cfg)
	for _, path := range []string{"/", "/config"} {
		body := getPage(t, base+path)
		for _, secret := range []string{"url-pass-1", "basic-pass-2", "bearer-token-3"} {
			if strings.Contains(body, secret) {
				t.Errorf("GET %s shows the secret %q", path, secret)
			}
		}
		if path == "/config" && strings.Count(body, "password: &lt;secret&gt;")+strings.Count(body, "credentials: &lt;secret&gt;") != 2 {
			t.Errorf("GET /config: want the password and the token as <secret>:\n%s", body)
		}
		if !strings.Contains(body, "basic") || !strings.Contains(body, "bearer") {
			t.Errorf("GET %s does not name the upstreams", path)
		}
	}
}

// getPage GETs a page that must answer 200, and returns its body.
func getPage(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return string(body)
}

// sendPrometheusLike writes what a Prometheus sender writes for a LiteLLM
// exporter, rounds scrapes 15 s apart ending now, one TimeSeries per sample:
// users u0-u9 with a None and a genuine 500 series (they collide), n0-n4 a
// None series alone, g0-g4 a genuine 500 alone. The last two rounds go in
// one request, as a sender catching up sends them: each series twice.
func sendPrometheusLike(t *testing.T, base string, rounds int) {
	t.Helper()
	var all []labels.Labels
	add := func(user, code string) {
		all = append(all, labels.FromStrings("__name__", "litellm_proxy_total_requests_metric_total", "status_code", code, "user", user))
	}
	for i := range 10 {
		add(fmt.Sprintf("u%d", i), "None")
		add(fmt.Sprintf("u%d", i), "500")
	}
	for i := range 5 {
		add(fmt.Sprintf("n%d", i), "None")
		add(fmt.Sprintf("g%d", i), "500")
	}
	start := time.Now().Add(-time.Duration(rounds) * 15 * time.Second).UnixMilli()
	req := &prompb.WriteRequest{}
	for r := range rounds {
		for i, ls := range all {
			req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: prompb.FromLabels(ls, nil),
				Samples: []prompb.Sample{{Value: float64((i%3 + 1) * (r + 1)), Timestamp: start + int64(r)*15000}}})
		}
		if r == rounds-2 {
			continue // caught up with the next round
		}
		raw, err := req.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if code := postWrite(t, base, rwtest.ProtoV1, s2.EncodeSnappy(nil, raw)); code/100 != 2 {
			t.Fatalf("round %d: rwfix answered %d", r, code)
		}
		req = &prompb.WriteRequest{}
	}
}

// TestStatusPageInBrowser: after a Prometheus sender's traffic (a series
// sent twice in one request included), every playground link of the status
// page opens a playground that runs; a _created collision says it keeps the
// earliest creation time; the status page reloads itself.
func TestStatusPageInBrowser(t *testing.T) {
	ctx := newBrowser(t, 3*time.Minute)
	up := rwtest.NewRecordingUpstream(t)
	base, _ := startRwfix(t, "--upstream.url="+up.URL)
	sendPrometheusLike(t, base, 8)

	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	links, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#examples a")).map(a => a.href)`))
	if err != nil {
		t.Fatal(err)
	}
	if len(links) < 10 {
		t.Errorf("%d playground links on the status page, want at least 10", len(links))
	}
	loaded := 0
	for _, l := range links {
		if err := chromedp.Do(ctx, chromedp.Navigate(l)); err != nil {
			t.Fatalf("opening %s: %v", l, err)
		}
		// The page runs the link's input on load: wait for its result or
		// its error.
		const done = `document.getElementById("state").textContent !== "running…" && (!document.getElementById("result").hidden || !document.getElementById("error").hidden)`
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](done, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
			t.Fatalf("the playground of %s: %v", l, err)
		}
		got, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[document.getElementById("state").textContent, document.getElementById("error").hidden ? "" : document.getElementById("error").textContent]`))
		if err != nil {
			t.Fatal(err)
		}
		if got[1] != "" || !strings.Contains(got[0], "steps of") {
			t.Errorf("the link %s: the playground says %q", l, got)
			continue
		}
		loaded++
	}
	t.Logf("%d of %d playground links of the status page load", loaded, len(links))

	created := `litellm_proxy_total_requests_metric_created{status_code="None", user="a"} 1700000100 1700000100
litellm_proxy_total_requests_metric_created{status_code="500", user="a"} 1700000050 1700000050
`
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/playground"),
		chromedp.SetValue(chromedp.CSS("#series"), created),
		chromedp.Click(chromedp.CSS("#run")),
		chromedp.WaitVisible(chromedp.CSS("#result"))); err != nil {
		t.Fatal(err)
	}
	if c := pageText(ctx, t, "#collisions"); !strings.Contains(c, "the earliest creation time") || strings.Contains(c, "sum") || !strings.Contains(c, "1700000050") {
		t.Errorf("a _created collision: want the earliest creation time, not a sum:\n%s", c)
	}

	// The status page shows new traffic by itself.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	before, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("traffic").innerText`))
	if err != nil {
		t.Fatal(err)
	}
	sendPrometheusLike(t, base, 3)
	waitFor(t, "the status page to reload itself", 30*time.Second, func() (bool, error) {
		now, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("traffic").innerText`))
		return err == nil && now != before, err
	})
}
