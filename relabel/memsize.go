package relabel

import (
	"math/bits"
	"unsafe"

	"github.com/prometheus/prometheus/model/labels"
)

// Heap sizes, for the memory budget that the decision cache shares with the
// merge state (see decisionCache). They are estimates of what the Go heap
// really holds, a little high rather than low: an allocation takes its size
// class, not its length, and a map slot its share of a table that is at most
// 7/8 full and grows by doubling.

// allocSize is the heap an allocation of n bytes takes: its size class,
// approximated from above (Go's classes are at most 1/8 apart above 128
// bytes; large objects take whole 8 KiB pages).
func allocSize(n int) int64 {
	switch {
	case n <= 0:
		return 0
	case n <= 16:
		return int64((n + 7) &^ 7)
	case n <= 128:
		return int64((n + 15) &^ 15)
	case n <= 32<<10:
		step := 1 << (bits.Len(uint(n-1)) - 3) // an eighth of the next power of two
		return int64((n + step - 1) &^ (step - 1))
	}
	return int64((n + 8191) &^ 8191)
}

// mapEntryBytes is what one entry of a map with keys and values of
// kvBytes together costs: its slot and control byte, in a table between
// 7/16 and 7/8 full (after growing, before the next growth): counted at the
// emptier end, where tables that churned stay (Go's maps do not shrink).
func mapEntryBytes(kvBytes uintptr) int64 {
	return int64(kvBytes+1) * 16 / 7
}

// stringLabels: labels.Labels is Prometheus' default implementation, one
// string (build tag stringlabels, the default): one allocation per label
// set, which copies of it share. The other implementations (slicelabels,
// dedupelabels) are measured by ByteSize and never seen as shared.
var stringLabels = labels.ImplementationName == "stringlabels" && unsafe.Sizeof(labels.Labels{}) == unsafe.Sizeof("")

// labelsData is the address of ls's string (stringlabels only).
func labelsData(ls labels.Labels) *byte {
	return unsafe.StringData(*(*string)(unsafe.Pointer(&ls)))
}

// labelsBytes is the heap ls's own memory takes (its string, for
// stringlabels), shared by its copies.
func labelsBytes(ls labels.Labels) int64 {
	return allocSize(int(ls.ByteSize()))
}

// sameLabelsMemory reports whether a and b are copies of one label set's
// memory (so that it is counted once); false when that cannot be told.
func sameLabelsMemory(a, b labels.Labels) bool {
	if !stringLabels || a.IsEmpty() || b.IsEmpty() {
		return false
	}
	return labelsData(a) == labelsData(b) && a.ByteSize() == b.ByteSize()
}
