package relabel

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// The state file keeps the merge state across restarts: with it, a restarted
// rwfix knows every source's last value and the carry, so its outputs need no
// warm-up and cannot drop (a fake reset) because a source was forgotten.
// It is JSON, written atomically (temporary file, then rename).

const stateVersion = 1

type stateFile struct {
	Version int           `json:"version"`
	SavedAt time.Time     `json:"saved_at"`
	Outputs []stateOutput `json:"outputs"`
}

type stateOutput struct {
	Labels  labels.Labels `json:"labels"`
	Carry   float64       `json:"carry"`
	LastT   int64         `json:"last_t"`
	Emitted bool          `json:"emitted"`
	Sources []stateSource `json:"sources"`
}

type stateSource struct {
	Labels labels.Labels `json:"labels"`
	V      float64       `json:"v"`
	T      int64         `json:"t"`
	Stale  bool          `json:"stale,omitempty"`
	// ResetAt is the timestamp of the source's last reset, 0 if none.
	ResetAt int64 `json:"reset_at,omitempty"`
}

// Save writes the merge state to path.
func (m *Merger) Save(path string) error {
	m.mu.Lock()
	st := stateFile{Version: stateVersion, SavedAt: m.now().UTC()}
	for _, l := range m.outs {
		for _, o := range l {
			so := stateOutput{Labels: o.labels, Carry: o.carry, LastT: o.lastT, Emitted: o.emitted}
			for _, s := range o.sources {
				if s.t == math.MinInt64 {
					continue
				}
				ss := stateSource{Labels: s.labels, V: s.v, T: s.t, Stale: s.stale}
				if s.resetAt != math.MinInt64 {
					ss.ResetAt = s.resetAt
				}
				so.Sources = append(so.Sources, ss)
			}
			st.Outputs = append(st.Outputs, so)
		}
	}
	m.mu.Unlock()
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".rwfix-state-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Load restores the merge state from path. A missing file is not an error
// (first start); a corrupt one is, and leaves the state empty (the warm-up
// then protects the outputs).
func (m *Merger) Load(path string) (int, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var st stateFile
	if err := json.Unmarshal(data, &st); err != nil {
		return 0, fmt.Errorf("merge state file %s: %w", path, err)
	}
	if st.Version != stateVersion {
		return 0, fmt.Errorf("merge state file %s: version %d, want %d", path, st.Version, stateVersion)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	for _, so := range st.Outputs {
		h := so.Labels.Hash()
		if m.find(so.Labels, h) != nil || m.n >= m.cfg.MaxSeries {
			continue
		}
		o := &mergedSeries{
			labels: so.Labels, restored: true, carry: so.Carry, lastT: so.LastT, emitted: so.Emitted, touched: now,
			min: isCreated(so.Labels),
		}
		for _, ss := range so.Sources {
			resetAt := int64(math.MinInt64)
			if ss.ResetAt != 0 {
				resetAt = ss.ResetAt
			}
			o.sources = append(o.sources, &mergeSource{
				labels: ss.Labels, v: ss.V, t: ss.T, stale: ss.Stale, resetAt: resetAt, touched: now,
			})
		}
		m.outs[h] = append(m.outs[h], o)
		m.n++
	}
	return len(st.Outputs), nil
}
