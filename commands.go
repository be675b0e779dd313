package main

import (
	"fmt"
	"os"

	"github.com/alecthomas/kingpin/v2"

	"github.com/rwfix/rwfix/relabel"
	"github.com/rwfix/rwfix/remotewrite/offline"
	"github.com/rwfix/rwfix/remotewrite/series"
)

// subCommands are rwfix's commands other than serve.
type subCommands struct {
	testRules    *kingpin.CmdClause
	testFiles    *[]string
	replay       *kingpin.CmdClause
	replayConfig *string
	replayFull   *bool
	replayPaths  *[]string
	checkConfig  *kingpin.CmdClause
	checkFiles   *[]string
}

func addCommands(app *kingpin.Application) *subCommands {
	c := &subCommands{}
	addDocumentationFlag(app)
	test := app.Command("test", "Test rules offline.")
	c.testRules = test.Command("rules", "Run promtool-style unit tests of the repairs (see testdata/rules/).")
	c.testFiles = c.testRules.Arg("test-file", "Test files.").Required().ExistingFiles()

	c.replay = app.Command("replay", "Show what the configured pipeline would change in captured remote-write bodies.")
	c.replayConfig = c.replay.Flag("config.file", "rwfix configuration (default: the built-in defaults).").String()
	c.replayFull = c.replay.Flag("full", "Print every request before and after.").Bool()
	c.replayPaths = c.replay.Arg("path", ".rw1/.rw2 files or directories of them (testdata/fixtures, or a --capture.dir).").Required().Strings()

	check := app.Command("check", "Check a configuration.")
	c.checkConfig = check.Command("config", "Check a configuration file; exit non-zero if it is invalid.")
	c.checkFiles = c.checkConfig.Arg("file", "Configuration files.").Required().ExistingFiles()
	return c
}

// run runs cmd if it is one of these; ok is false for serve.
func (c *subCommands) run(cmd string) (rc int, ok bool) {
	switch cmd {
	case c.checkConfig.FullCommand():
		return checkConfigFiles(*c.checkFiles), true
	case c.testRules.FullCommand():
		failed, err := offline.RunRuleTests(os.Stdout, *c.testFiles, offlineRepairer)
		if failed > 0 {
			fmt.Printf("%d tests FAILED\n", failed)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "FAILED:", err)
		}
		if failed > 0 || err != nil {
			return 1, true
		}
		return 0, true
	case c.replay.FullCommand():
		rep, err := offlineRepairer(*c.replayConfig)
		if err == nil {
			err = offline.Replay(os.Stdout, *c.replayPaths, rep, *c.replayFull)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "FAILED:", err)
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// offlineRepairer builds the pipeline of a configuration file ("" for the
// defaults) for `test rules` and `replay`: as the server would, but with no
// merge warm-up, since there is no earlier traffic to wait for.
func offlineRepairer(path string) (series.Repairer, error) {
	cfg, err := loadConfig(path, nil, 0)
	if err != nil {
		return nil, err
	}
	cfg.Repair.Collision.Warmup = 0
	return relabel.New(cfg.Repair, nil, nil)
}

// checkConfigFiles is `rwfix check config FILE...`.
func checkConfigFiles(files []string) int {
	rc := 0
	for _, f := range files {
		cfg, err := loadConfig(f, nil, 0)
		if err == nil {
			_, err = relabel.New(cfg.Repair, nil, nil)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "FAILED: %s: %v\n", f, err)
			rc = 1
			continue
		}
		fmt.Printf("SUCCESS: %s is valid: presets %v, %d relabel rules, %d upstreams\n", f, cfg.Repair.Presets, len(cfg.Repair.RelabelConfigs), len(cfg.Upstreams))
	}
	return rc
}
