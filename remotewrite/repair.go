package remotewrite

import (
	"github.com/rwfix/rwfix/remotewrite/series"
)

// retrying tells r, if it wants to know, that part's sender is retrying.
func retrying(r series.Repairer, part string) {
	if rr, ok := r.(series.Retrying); ok {
		rr.Retrying(part)
	}
}

// mergeRun is the handler's side of a MergeRun (nil-safe).
type mergeRun struct{ run series.MergeRun }

func (mr *mergeRun) done(ok bool, taken []int) {
	if mr != nil && mr.run != nil {
		mr.run.Done(ok, taken)
	}
}

// waiting: the request must not go now (series.Waiting).
func (mr *mergeRun) waiting() bool {
	if mr == nil || mr.run == nil {
		return false
	}
	w, ok := mr.run.(series.Waiting)
	return ok && w.Waiting()
}

// sequential: the retries must be settled before the request goes.
func (mr *mergeRun) sequential() bool { return mr != nil && mr.run != nil && mr.run.Sequential() }

func (mr *mergeRun) retries() []series.Emit {
	if mr == nil || mr.run == nil {
		return nil
	}
	return mr.run.Retries()
}

// applyRepair runs r over a request, in either representation.
func applyRepair(b series.Batch, r series.Repairer, part string) (series.Result, *mergeRun) {
	res, run := r.Apply(b, part)
	if run == nil {
		return res, nil
	}
	return res, &mergeRun{run: run}
}

// backlog is how many of the retries are the sender's own samples
// (series.Backlog).
func (mr *mergeRun) backlog() int {
	if mr == nil || mr.run == nil {
		return 0
	}
	if bl, ok := mr.run.(series.Backlog); ok {
		return bl.Backlog()
	}
	return 0
}

// backlogSettled reports whether every upstream settled the sender's own
// samples among the retries (series.Backlog), by taken (see sendRetries).
func (mr *mergeRun) backlogSettled(taken []int) bool {
	if mr == nil || mr.run == nil {
		return true
	}
	n := mr.backlog()
	if n == 0 {
		return true
	}
	retries := mr.run.Retries()
	for i := len(retries) - n; i < len(retries); i++ {
		if i >= len(taken) || taken[i] < len(retries[i].Samples) {
			return false
		}
	}
	return true
}
