package relabel

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/rwfix/rwfix/remotewrite/series"
)

// Label-set hashing without building labels: a series' wire labels (through
// Batch.Pairs) and a labels.Labels hash alike, for the collision guard, the
// fences and the decision cache's keys.

// hashSeries hashes series i's labels from its pairs, as hashLabels hashes
// a labels.Labels: equal label sets hash alike without building either.
// h is scratch space, reused from series to series (it escapes through
// Pairs).
func hashSeries(b series.Batch, i int, h *pairHasher) uint64 {
	h.reset()
	b.Pairs(i, h.addFn)
	return h.sum()
}

// pairHasher hashes a label set from its name/value pairs, so that a
// series' wire labels and a labels.Labels hash alike without building
// either. It buffers, to feed xxhash in few large writes.
type pairHasher struct {
	d   xxhash.Digest
	buf [512]byte
	n   int
	// keyed: a decisionCache key — names and values length-prefixed (see
	// addKeyed), also hashed into d2 with another seed.
	keyed bool
	d2    xxhash.Digest
	addFn func(name, value string) // h.add, made once: a method value passed on allocates
}

// newPairHasher returns a hasher to pass to Batch.Pairs, series after series.
func newPairHasher() *pairHasher {
	h := &pairHasher{}
	h.addFn = h.add
	return h
}

// seed2 is the seed of the second hash of decisionCache's keys.
const seed2 = 0x9e3779b97f4a7c15

func (h *pairHasher) reset() { h.d.Reset(); h.n = 0; h.keyed = false }

func (h *pairHasher) write(b []byte) {
	_, _ = h.d.Write(b)
	if h.keyed {
		_, _ = h.d2.Write(b)
	}
}

func (h *pairHasher) add(name, value string) {
	if h.keyed {
		h.addKeyed(name, value)
		return
	}
	if h.n+len(name)+len(value)+2 > len(h.buf) {
		h.write(h.buf[:h.n])
		h.n = 0
		if len(name)+len(value)+2 > len(h.buf) {
			h.write([]byte(name))
			h.write([]byte{0xff})
			h.write([]byte(value))
			h.write([]byte{0xff})
			return
		}
	}
	h.n += copy(h.buf[h.n:], name)
	h.buf[h.n] = 0xff
	h.n++
	h.n += copy(h.buf[h.n:], value)
	h.buf[h.n] = 0xff
	h.n++
}

// addKeyed is add for decisionCache's keys, which no comparison of labels
// backs: each name and value goes with its length, so that the bytes name
// one label set even where a value holds the 0xff separator (possible with
// validate_utf8 off).
func (h *pairHasher) addKeyed(name, value string) {
	if h.n+len(name)+len(value)+2*binary.MaxVarintLen64 > len(h.buf) {
		h.write(h.buf[:h.n])
		h.n = 0
	}
	for _, str := range [2]string{name, value} {
		if h.n+binary.MaxVarintLen64+len(str) > len(h.buf) {
			h.write(h.buf[:h.n])
			h.n = 0
			var l [binary.MaxVarintLen64]byte
			h.write(l[:binary.PutUvarint(l[:], uint64(len(str)))])
			h.write([]byte(str))
			continue
		}
		h.n += binary.PutUvarint(h.buf[h.n:], uint64(len(str)))
		h.n += copy(h.buf[h.n:], str)
	}
}

func (h *pairHasher) sum() uint64 {
	h.write(h.buf[:h.n])
	h.n = 0
	return h.d.Sum64()
}

func hashLabels(ls labels.Labels) uint64 {
	var h pairHasher
	h.reset()
	ls.Range(func(l labels.Label) { h.add(l.Name, l.Value) })
	return h.sum()
}
