package relabel

import (
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// TestCollectListsKeptCleared checks the emit lists kept between requests:
// each request's emits are its own (numbered by its Add calls), and a list
// given back keeps no labels or samples alive.
func TestCollectListsKeptCleared(t *testing.T) {
	clock := &fakeClock{t: time.UnixMilli(0)}
	m := NewMerger(DefaultCollisionConfig(), nil)
	m.SetClock(clock.now)
	m.setPreimage(func(labels.Labels) int { return 1 })
	outs := make([]labels.Labels, 40)
	for i := range outs {
		outs[i] = labels.FromStrings("__name__", "c_total", "i", strconv.Itoa(i))
	}
	for round := range int64(4) {
		clock.add(15 * time.Second)
		tx := m.begin("", 0)
		// Fewer outputs every round: a kept list longer than the request.
		n := len(outs) - 10*int(round)
		for i := range n {
			tx.Add(outs[i], []labels.Labels{outs[i]}, [][]Sample{{{T: round * 15000, V: float64(round)}}})
		}
		emits := tx.Collect()
		if len(emits) != n {
			t.Fatalf("round %d: %d emits, want %d", round, len(emits), n)
		}
		for _, e := range emits {
			if i := e.Group; i < 0 || i >= n || !labels.Equal(e.Labels, outs[i]) || len(e.Samples) != 1 || e.Samples[0].T != round*15000 {
				t.Fatalf("round %d: emit %v for group %d", round, e, e.Group)
			}
		}
		all := emits[:cap(emits)]
		tx.releaseEmits()
		for i, e := range all {
			if !e.Labels.IsEmpty() || e.Samples != nil || e.Group != 0 {
				t.Fatalf("round %d: the list given back keeps emit %d: %v", round, i, e)
			}
		}
		if tx.lists != nil {
			t.Fatalf("round %d: the transaction keeps the lists given back", round)
		}
		tx.Done(true, nil)
	}
}

// TestShardListsKeptCleared checks that a shard's lists given back at the
// end of a transaction keep none of its outputs alive, and that the
// transaction no longer holds them.
func TestShardListsKeptCleared(t *testing.T) {
	clock := &fakeClock{t: time.UnixMilli(0)}
	m := NewMerger(DefaultCollisionConfig(), nil)
	m.SetClock(clock.now)
	m.setPreimage(func(labels.Labels) int { return 1 })
	tx := m.begin("", 0)
	tx.expect(64)
	for i := range 64 {
		out := labels.FromStrings("__name__", "c_total", "i", strconv.Itoa(i))
		tx.Add(out, []labels.Labels{out}, [][]Sample{{{T: 15000, V: 1}}})
	}
	tx.Collect()
	var kept []*shardLists
	for i := range tx.subs {
		if tx.began[i] && tx.subs[i].lists != nil {
			kept = append(kept, tx.subs[i].lists)
		}
	}
	if len(kept) == 0 {
		t.Fatal("no shard took its lists from the pool")
	}
	tx.Done(true, nil)
	for i := range tx.subs {
		if sub := &tx.subs[i]; sub.lists != nil || sub.groups != nil || sub.attached != nil || sub.retry != nil {
			t.Fatalf("shard %d: the transaction keeps its lists after Done", i)
		}
	}
	for _, sl := range kept {
		for _, o := range append(sl.groups[:cap(sl.groups)], sl.attached[:cap(sl.attached)]...) {
			if o != nil {
				t.Fatalf("lists given back keep output %d", o.id)
			}
		}
	}
}
