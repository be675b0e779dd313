package main

// The documentation checks itself: the command-line reference is the
// binary's own model, and every relative link in README.md and docs/ leads
// to a file (and a heading) that exists.

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

func TestCommandLineDocs(t *testing.T) {
	out, err := exec.Command(rwfixBin, "--write-documentation").Output()
	if err != nil {
		t.Fatalf("rwfix --write-documentation: %v", err)
	}
	for _, want := range []string{"## `rwfix serve`", "`--upstream.url` (repeatable)", "## `rwfix check config`", "## `rwfix replay`", "## `rwfix test rules`", "`--log.level`"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("the generated reference lacks %q:\n%s", want, out)
		}
	}
	if bytes.Contains(out, []byte("write-documentation`")) {
		t.Errorf("the hidden --write-documentation flag is documented:\n%s", out)
	}
	have, err := os.ReadFile("docs/command-line.md")
	if err != nil {
		t.Fatalf("docs/command-line.md: %v; create it: %s", err, writeDocsCommand)
	}
	if !bytes.Equal(have, out) {
		t.Fatalf("docs/command-line.md is stale: run `%s`\n%s", writeDocsCommand, firstDifference(have, out))
	}
}

// firstDifference names the first line where the file and the generated
// text differ.
func firstDifference(have, want []byte) string {
	h, w := strings.Split(string(have), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < len(h) || i < len(w); i++ {
		var hl, wl string
		if i < len(h) {
			hl = h[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if hl != wl {
			return "first difference, line " + strconv.Itoa(i+1) + ":\n  file:      " + hl + "\n  generated: " + wl
		}
	}
	return ""
}

var (
	mdLink    = regexp.MustCompile(`!?\[[^\]]*\]\(([^)\s]+)\)`)
	mdHeading = regexp.MustCompile("(?m)^#{1,6} +(.+?) *#*$")
	mdFence   = regexp.MustCompile("(?ms)^```.*?^```")
)

func TestDocLinks(t *testing.T) {
	files, _ := filepath.Glob("docs/*.md")
	files = append([]string{"README.md"}, files...)
	if len(files) < 5 {
		t.Fatalf("want README.md and the docs/ pages, found %v", files)
	}
	checked := 0
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		body := mdFence.ReplaceAll(text, nil) // code blocks hold no links
		for _, m := range mdLink.FindAllSubmatch(body, -1) {
			target := string(m[1])
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			checked++
			path, anchor, _ := strings.Cut(target, "#")
			dest := f
			if path != "" {
				dest = filepath.Join(filepath.Dir(f), path)
				if _, err := os.Stat(dest); err != nil {
					t.Errorf("%s: link %q: %s does not exist", f, target, dest)
					continue
				}
			}
			if anchor == "" {
				continue
			}
			if !strings.HasSuffix(dest, ".md") {
				t.Errorf("%s: link %q: an anchor into a file that is not Markdown", f, target)
				continue
			}
			if !hasAnchor(t, dest, anchor) {
				t.Errorf("%s: link %q: %s has no heading with the anchor #%s", f, target, dest, anchor)
			}
		}
	}
	if checked < 10 {
		t.Errorf("only %d relative links checked: the pattern is broken", checked)
	}
}

// hasAnchor tells whether a Markdown file has a heading whose GitHub anchor
// is anchor: lower case, spaces as hyphens, punctuation other than - and _
// dropped.
func hasAnchor(t *testing.T, file, anchor string) bool {
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mdHeading.FindAllSubmatch(mdFence.ReplaceAll(text, nil), -1) {
		if slug(string(m[1])) == anchor {
			return true
		}
	}
	return false
}

func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
