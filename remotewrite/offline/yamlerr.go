package offline

import (
	"errors"
	"regexp"
	"strings"
)

// HumanError rewrites the YAML decoder's messages so that they name what
// the user wrote, not Go types: "field bogus not found in type main.plain"
// becomes `unknown field "bogus"`, "cannot unmarshal !!seq into
// relabel.Policy" becomes "a list where a string belongs". Other errors
// pass as they are.
func HumanError(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if !strings.Contains(msg, "yaml: ") {
		return err
	}
	msg = strings.Replace(msg, "yaml: unmarshal errors:\n  ", "", 1)
	msg = strings.ReplaceAll(msg, "\n  ", "; ")
	msg = strings.ReplaceAll(msg, "yaml: ", "")
	msg = notFound.ReplaceAllString(msg, `unknown field "$1"`)
	msg = cannotUnmarshal.ReplaceAllStringFunc(msg, func(m string) string {
		g := cannotUnmarshal.FindStringSubmatch(m)
		got := yamlKinds[g[1]]
		if got == "" {
			got = "a value"
		}
		if g[2] != "" {
			got += " (" + g[2] + ")"
		}
		return got + " where " + goKind(g[3]) + " belongs"
	})
	return &humanError{msg: msg, err: err}
}

type humanError struct {
	msg string
	err error
}

func (e *humanError) Error() string { return e.msg }
func (e *humanError) Unwrap() error { return e.err }

var (
	notFound        = regexp.MustCompile(`field (\S+) not found in type [\w.*\[\]]+`)
	cannotUnmarshal = regexp.MustCompile("cannot unmarshal (!!\\w+)(?: `([^`]*)`)? into ([\\w.*\\[\\]]+)")
	yamlKinds       = map[string]string{
		"!!seq": "a list", "!!map": "a mapping", "!!str": "a string", "!!int": "a number",
		"!!float": "a number", "!!bool": "true or false", "!!null": "nothing", "!!timestamp": "a date",
	}
)

// goKind describes a Go type the way the configuration's reader sees it.
func goKind(t string) string {
	t = strings.TrimLeft(t, "*")
	switch {
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["):
		return "a mapping"
	case t == "string" || strings.HasSuffix(t, "Secret") || strings.HasSuffix(t, "Policy") || strings.HasSuffix(t, "Action") || strings.HasSuffix(t, "Regexp"):
		return "a string"
	case strings.HasPrefix(t, "int") || strings.HasPrefix(t, "uint") || strings.HasPrefix(t, "float"):
		return "a number"
	case t == "bool":
		return "true or false"
	case strings.HasSuffix(t, "Duration"):
		return "a duration (e.g. 30s)"
	case strings.HasSuffix(t, "URL"):
		return "a URL"
	}
	return "a mapping" // a struct: a section of named fields
}

// errNotATest says a file given to `rwfix test rules` holds no tests.
var errNotATest = errors.New("not a rule test file")
