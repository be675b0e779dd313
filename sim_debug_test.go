package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestSimDebug(t *testing.T) {
	sc := simScenarios[2]
	dir := t.TempDir()
	w := newSimWorld(13, sc, dir)
	if err := w.setup(); err != nil {
		t.Fatal(err)
	}
	w.run()
	w.fix.close()
	defer w.db.close()
	fmt.Fprintln(os.Stderr, "drops", w.snd.drops, "sent", w.snd.sent, "refused", w.db.refused, "reqs", w.db.requests)
	for _, s := range w.snd.order {
		if !strings.Contains(s.lbls.String(), "key-2") || s.kind != kindOKTotal {
			continue
		}
		fmt.Fprintln(os.Stderr, s.lbls)
		for _, smp := range s.wal {
			if smp.t > simBase+300_000 && smp.t < simBase+400_000 {
				fmt.Fprintln(os.Stderr, "wal", rel(smp.t), smp.v)
			}
		}
		for _, smp := range w.db.stored(s.lbls) {
			if smp.t > simBase+300_000 && smp.t < simBase+400_000 {
				fmt.Fprintln(os.Stderr, "db", rel(smp.t), smp.v)
			}
		}
	}
}
