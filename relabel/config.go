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
	// Warmup: after a start, outputs not restored from StateFile are held
	// this long (their state builds, nothing is emitted), so that the first
	// value sent already includes every source. Make it at least one scrape
	// interval plus the sender's batch_send_deadline.
	Warmup model.Duration `yaml:"warmup,omitempty"`
	// MaxSeries bounds the merge state. Beyond it, new outputs are not merged:
	// their rewrites are undone and the series forwarded unrepaired.
	MaxSeries int `yaml:"max_series,omitempty"`
	// IdleTimeout: a source not seen for this long is folded into its
	// output's carry and forgotten; an output whose sources all are, too.
	IdleTimeout model.Duration `yaml:"idle_timeout,omitempty"`
	// StateFile, when set, is where the merge state is saved on shutdown and
	// every 30 s, and restored from at start: restored outputs need no warm-up.
	StateFile string `yaml:"state_file,omitempty"`
}

// Defaults of CollisionConfig.
const (
	DefaultWarmup      = 2 * time.Minute
	DefaultMaxSeries   = 100000
	DefaultIdleTimeout = 15 * time.Minute
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
}

// Validate checks the collision settings.
func (c *CollisionConfig) Validate() error {
	if c.Policy == "" {
		c.Policy = PolicyMerge
	}
	if c.Policy != PolicyMerge && c.Policy != PolicyKeepDistinct {
		return fmt.Errorf("collision.policy %q: must be %q or %q", c.Policy, PolicyMerge, PolicyKeepDistinct)
	}
	if c.Warmup < 0 {
		return errors.New("collision.warmup must not be negative")
	}
	if c.IdleTimeout <= 0 || c.MaxSeries <= 0 {
		return errors.New("collision.idle_timeout and collision.max_series must be positive")
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
		Warmup:      model.Duration(DefaultWarmup),
		MaxSeries:   DefaultMaxSeries,
		IdleTimeout: model.Duration(DefaultIdleTimeout),
	}
}

// UnmarshalYAML starts from the defaults, so that a key left out keeps its
// default and an explicit "warmup: 0s" means no warm-up.
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
