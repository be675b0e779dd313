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
		// The README's picture: RWFIX_SCREENSHOT=testdata/ui/playground.png.
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
