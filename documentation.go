package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/alecthomas/kingpin/v2"
)

// The command-line reference, docs/command-line.md, is generated from the
// kingpin model of rwfix's flags and commands, so that it cannot drift from
// the binary (TestCommandLineDocs fails when it is stale):
//
//	go run . --write-documentation > docs/command-line.md

// writeDocsCommand is the command that regenerates the reference.
const writeDocsCommand = "go run . --write-documentation > docs/command-line.md"

// addDocumentationFlag adds the hidden --write-documentation flag: it prints
// the reference of the whole application, as parsed (every flag and command
// added before Parse is in the model), and exits.
func addDocumentationFlag(app *kingpin.Application) {
	app.Flag("write-documentation", "Print the command-line reference (docs/command-line.md) as Markdown and exit.").
		Hidden().
		Action(func(*kingpin.ParseContext) error {
			if err := writeCommandLineDocs(os.Stdout, app.Model()); err != nil {
				fmt.Fprintln(os.Stderr, "writing the documentation:", err)
				os.Exit(1)
			}
			os.Exit(0)
			return nil
		}).
		Bool()
}

// writeCommandLineDocs renders the model as Markdown: the application's
// flags, then each visible command (the default one marked), with its flags
// and arguments. Hidden flags and commands are left out.
func writeCommandLineDocs(w io.Writer, m *kingpin.ApplicationModel) error {
	b := bufio.NewWriter(w)
	fmt.Fprintf(b, "# Command line\n\n")
	fmt.Fprintf(b, "<!-- Generated from rwfix's kingpin model by `%s`; do not edit. -->\n\n", writeDocsCommand)
	fmt.Fprintf(b, "%s\n\n", oneLine(m.Help))
	fmt.Fprintf(b, "```\n%s\n```\n", usageLine(m.Name, "", m.FlagGroupModel, m.ArgGroupModel, m.CmdGroupModel))
	writeFlags(b, "##", "Flags of every command", m.FlagGroupModel)
	writeArgs(b, "##", m.ArgGroupModel)
	if m.CmdGroupModel != nil {
		for _, c := range flattenCommands(m.Commands) {
			fmt.Fprintf(b, "\n## `%s %s`\n\n%s\n\n", m.Name, c.FullCommand, oneLine(c.Help))
			if c.Default {
				fmt.Fprintf(b, "`%s` alone, or with only these flags, runs this command.\n\n", m.Name)
			}
			fmt.Fprintf(b, "```\n%s\n```\n", usageLine(m.Name, c.FullCommand, c.FlagGroupModel, c.ArgGroupModel, nil))
			writeFlags(b, "###", "Flags", c.FlagGroupModel)
			writeArgs(b, "###", c.ArgGroupModel)
		}
	}
	return b.Flush()
}

// flattenCommands lists the commands that run something (a group such as
// `check` only holds others), in the model's order, hidden ones left out.
func flattenCommands(cmds []*kingpin.CmdModel) []*kingpin.CmdModel {
	var out []*kingpin.CmdModel
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		if c.CmdGroupModel != nil && len(c.Commands) > 0 {
			out = append(out, flattenCommands(c.Commands)...)
			continue
		}
		out = append(out, c)
	}
	return out
}

// usageLine is a one-line synopsis: `rwfix replay [<flags>] <path>...`.
func usageLine(app, cmd string, fg *kingpin.FlagGroupModel, ag *kingpin.ArgGroupModel, cg *kingpin.CmdGroupModel) string {
	parts := []string{app}
	if cmd != "" {
		parts = append(parts, cmd)
	}
	if len(visibleFlags(fg)) > 0 {
		parts = append(parts, "[<flags>]")
	}
	if cg != nil && len(cg.Commands) > 0 {
		parts = append(parts, "<command> [<args> ...]")
	}
	if ag != nil {
		for _, a := range ag.Args {
			if a.Hidden {
				continue
			}
			s := "<" + a.Name + ">"
			if cumulative(a.Value) {
				s += "..."
			}
			if !a.Required {
				s = "[" + s + "]"
			}
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, " ")
}

func visibleFlags(fg *kingpin.FlagGroupModel) []*kingpin.FlagModel {
	if fg == nil {
		return nil
	}
	var out []*kingpin.FlagModel
	for _, f := range fg.Flags {
		if !f.Hidden {
			out = append(out, f)
		}
	}
	return out
}

func writeFlags(b *bufio.Writer, level, title string, fg *kingpin.FlagGroupModel) {
	flags := visibleFlags(fg)
	if len(flags) == 0 {
		return
	}
	fmt.Fprintf(b, "\n%s %s\n\n| flag | default | meaning |\n| --- | --- | --- |\n", level, title)
	for _, f := range flags {
		name := "`--" + f.Name + "`"
		if f.IsBoolFlag() && len(f.Default) > 0 && f.Default[0] == "true" {
			name = "`--[no-]" + f.Name + "`" // on by default: --no-NAME turns it off
		}
		if f.Short != 0 {
			name = fmt.Sprintf("`-%c`, %s", f.Short, name)
		}
		if cumulative(f.Value) {
			name += " (repeatable)"
		}
		def := ""
		if len(f.Default) > 0 {
			var ds []string
			for _, d := range f.Default {
				if d != "" {
					ds = append(ds, "`"+d+"`")
				}
			}
			def = strings.Join(ds, ", ")
		}
		help := f.Help
		if f.Required {
			help = "Required. " + help
		}
		if f.Envar != "" {
			help += " (environment: `$" + f.Envar + "`)"
		}
		fmt.Fprintf(b, "| %s | %s | %s |\n", name, def, cell(help))
	}
}

func writeArgs(b *bufio.Writer, level string, ag *kingpin.ArgGroupModel) {
	if ag == nil || len(ag.Args) == 0 {
		return
	}
	fmt.Fprintf(b, "\n%s Arguments\n\n| argument | required | meaning |\n| --- | --- | --- |\n", level)
	for _, a := range ag.Args {
		if a.Hidden {
			continue
		}
		name := "`" + a.Name + "`"
		if cumulative(a.Value) {
			name += " (one or more)"
		}
		req := "no"
		if a.Required {
			req = "yes"
		}
		fmt.Fprintf(b, "| %s | %s | %s |\n", name, req, cell(a.Help))
	}
}

// cumulative tells a repeatable flag or argument (kingpin's Strings and
// the like).
func cumulative(v kingpin.Value) bool {
	c, ok := v.(interface{ IsCumulative() bool })
	return ok && c.IsCumulative()
}

// cell makes text fit one Markdown table cell.
func cell(s string) string {
	return strings.ReplaceAll(oneLine(s), "|", `\|`)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
