package relabel

import (
	"slices"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/rwfix/rwfix/remotewrite/series"
)

// guardCollisions undoes every rewrite whose output label set is also the
// label set of another series in the same batch, so that rwfix never sends
// two different values for one series at one timestamp. The undone series is
// forwarded with its original labels: nothing is lost or corrupted, it is
// just not repaired. It returns how many rewrites it undid.
//
// Undoing a rewrite can in theory make the original labels collide with
// another rewrite's output, so it repeats until nothing collides; every round
// undoes at least one rewrite, so it ends.
func guardCollisions(edits []edit, b series.Batch, dropped *dropSet) int {
	undone := 0
	for {
		// Only rewrites outside the merge can collide; most batches have none.
		if !slices.ContainsFunc(edits, func(e edit) bool { return !e.merge && e.keep && !labels.Equal(e.out, e.orig) }) {
			return undone
		}
		outs := make(map[uint64][]int, len(edits)) // hash -> positions of live rewrites
		skip := make(map[int]bool, len(edits))     // series that are rewritten or dropped
		for _, i := range dropped.members() {
			skip[i] = true
		}
		for k := range edits {
			e := &edits[k]
			switch {
			case e.merge:
				// A merged output is one series; its slot carries it. Other
				// rewrites must not land on it either.
				if !dropped.has(int(e.idx)) {
					h := hashLabels(e.out)
					outs[h] = append(outs[h], k)
				}
				skip[int(e.idx)] = true
			case !e.keep:
				skip[int(e.idx)] = true
			case !labels.Equal(e.out, e.orig):
				skip[int(e.idx)] = true
				e.hash = hashLabels(e.out)
				outs[e.hash] = append(outs[e.hash], k)
			}
		}
		if len(outs) == 0 {
			return undone
		}
		clash := map[int]bool{}
		// Rewrites that land on one another.
		for _, ks := range outs {
			for a := 0; a < len(ks); a++ {
				for b := a + 1; b < len(ks); b++ {
					// One series that the request carries several times (a
					// sender catching up writes one TimeSeries per sample) is
					// one series: its rewrites do not collide.
					if labels.Equal(edits[ks[a]].out, edits[ks[b]].out) && !labels.Equal(edits[ks[a]].orig, edits[ks[b]].orig) {
						clash[ks[a]], clash[ks[b]] = true, true
					}
				}
			}
		}
		// Rewrites that land on a series forwarded with its own labels
		// (untouched, or whose rewrite was undone in an earlier round).
		var sb labels.ScratchBuilder
		h := newPairHasher()
		for i := range b.Len() {
			if skip[i] || b.Skip(i) {
				continue
			}
			for _, k := range outs[hashSeries(b, i, h)] {
				if labels.Equal(edits[k].out, b.Labels(i, &sb)) {
					clash[k] = true
				}
			}
		}
		if len(clash) == 0 {
			return undone
		}
		progress := false
		for k := range clash {
			if edits[k].merge {
				continue // a merged output stays; the rewrite landing on it is undone
			}
			edits[k].out = edits[k].orig
			undone++
			progress = true
		}
		if !progress {
			return undone
		}
	}
}
