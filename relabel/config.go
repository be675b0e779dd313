package relabel

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/relabel"
)

// Config is the repair part of rwfix's configuration file. Its fields sit at
// the top level of the file, so that a Prometheus user can paste a
// write_relabel_configs block as relabel_configs unchanged.
type Config struct {
	// Presets are built-in repairs, applied before RelabelConfigs. Absent
	// means [litellm]; an explicit empty list turns every preset off.
	Presets []string `yaml:"presets"`
	// RelabelConfigs are applied after the presets, with Prometheus'
	// semantics (model/relabel), including keep and drop.
	RelabelConfigs []*relabel.Config `yaml:"relabel_configs,omitempty"`
	// Collision says what happens when a rewrite lands on a label set that
	// another live series already has.
	Collision CollisionConfig `yaml:"collision,omitempty"`
}

// Policy is a collision policy.
type Policy string

const (
	// PolicyMerge makes one counter of all sources of an output label set:
	// the sum of their latest values (see Merger). The default.
	PolicyMerge Policy = "merge"
	// PolicyKeepDistinct is stateless: a rewritten series keeps its original
	// value in a marker label (status_code_original="None"), so it never
	// lands on another series.
	PolicyKeepDistinct Policy = "keep_distinct"
)

// MarkerSuffix names keep_distinct's marker label: <label>_original.
const MarkerSuffix = "_original"

// CollisionConfig configures the collision policy and the merge state.
type CollisionConfig struct {
	Policy Policy `yaml:"policy,omitempty"`
	// MaxWait caps how long an output sample waits for a source that has not
	// reported at its timestamp before the source is taken at its latest
	// value (counted in rwfix_merge_overdue_total). The wait itself is
	// learned from the traffic: twice the scrape interval plus BirthWait, at
	// most MaxWait.
	MaxWait model.Duration `yaml:"max_wait,omitempty"`
	// BirthWait is how long a merged sample at timestamp T is held after the
	// first sample at T arrived, so that a source born at that scrape, whose
	// first sample travels on another shard of the sender, still counts at T:
	// the sender's batch_send_deadline (Prometheus: 5 s) plus its network
	// and retry latency. It is the latency the merge adds to merged series
	// (and to no other series).
	BirthWait model.Duration `yaml:"birth_wait,omitempty"`
	// MaxSeries bounds the merge state. Beyond it, new outputs are not merged:
	// their rewrites are undone and the series forwarded unrepaired.
	MaxSeries int `yaml:"max_series,omitempty"`
	// IdleTimeout: an output none of whose sources has been seen for this
	// long, with nothing left to send, is forgotten. Longer than a sender's
	// longest outage, so that its backlog still finds the state.
	IdleTimeout model.Duration `yaml:"idle_timeout,omitempty"`

	// Warmup and StateFile are accepted and ignored: the merge no longer
	// holds outputs for a fixed time after a start, and its state lives in
	// the data directory (--storage.path). Kept so that old files still load.
	Warmup    model.Duration `yaml:"warmup,omitempty"`
	StateFile string         `yaml:"state_file,omitempty"`
}

// Defaults of CollisionConfig.
const (
	DefaultMaxWait     = 2 * time.Minute
	DefaultBirthWait   = 10 * time.Second
	DefaultMaxSeries   = 100000
	DefaultIdleTimeout = 2 * time.Hour
)

// setDefaults fills what a zero CollisionConfig (built in code) lacks.
func (c *CollisionConfig) setDefaults() {
	if c.Policy == "" {
		c.Policy = PolicyMerge
	}
	if c.MaxSeries == 0 {
		c.MaxSeries = DefaultMaxSeries
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = model.Duration(DefaultIdleTimeout)
	}
	if c.MaxWait == 0 {
		c.MaxWait = model.Duration(DefaultMaxWait)
	}
	if c.BirthWait == 0 {
		c.BirthWait = model.Duration(DefaultBirthWait)
	}
}

// Validate checks the collision settings.
func (c *CollisionConfig) Validate() error {
	if c.Policy == "" {
		c.Policy = PolicyMerge
	}
	if c.Policy != PolicyMerge && c.Policy != PolicyKeepDistinct {
		return fmt.Errorf("collision.policy %q: must be %q or %q", c.Policy, PolicyMerge, PolicyKeepDistinct)
	}
	if c.IdleTimeout <= 0 || c.MaxSeries <= 0 || c.MaxWait <= 0 || c.BirthWait < 0 {
		return errors.New("collision.idle_timeout, collision.max_wait, collision.birth_wait and collision.max_series must be positive")
	}
	return nil
}

// DefaultConfig is what rwfix runs with when no configuration file is given.
func DefaultConfig() Config {
	return Config{Presets: []string{PresetLiteLLM}, Collision: DefaultCollisionConfig()}
}

// DefaultCollisionConfig is the merge policy with its default limits.
func DefaultCollisionConfig() CollisionConfig {
	return CollisionConfig{
		Policy:      PolicyMerge,
		MaxWait:     model.Duration(DefaultMaxWait),
		BirthWait:   model.Duration(DefaultBirthWait),
		MaxSeries:   DefaultMaxSeries,
		IdleTimeout: model.Duration(DefaultIdleTimeout),
	}
}

// UnmarshalYAML starts from the defaults, so that a key left out keeps its
// default.
func (c *CollisionConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = DefaultCollisionConfig()
	type plain CollisionConfig
	return unmarshal((*plain)(c))
}

// UnmarshalYAML applies the defaults before decoding, so that a missing
// presets key keeps the LiteLLM repair on.
func (c *Config) UnmarshalYAML(unmarshal func(any) error) error {
	*c = DefaultConfig()
	type plain Config
	return unmarshal((*plain)(c))
}

// Validate checks presets and relabel rules the way Prometheus checks a
// write_relabel_configs block. Errors name the offending entry.
func (c *Config) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for i, name := range c.Presets {
		if _, err := lookupPreset(name); err != nil {
			errs = append(errs, fmt.Errorf("presets[%d]: %w", i, err))
		}
		if seen[name] {
			errs = append(errs, fmt.Errorf("presets[%d]: preset %q listed twice", i, name))
		}
		seen[name] = true
	}
	for i, rc := range c.RelabelConfigs {
		if rc == nil {
			errs = append(errs, fmt.Errorf("relabel_configs[%d]: empty rule", i))
			continue
		}
		// Prometheus 3 validates label names as UTF-8 by default; so do we.
		if err := rc.Validate(model.UTF8Validation); err != nil {
			errs = append(errs, fmt.Errorf("relabel_configs[%d]: %w", i, err))
		}
	}
	if err := c.Collision.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
