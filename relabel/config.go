package relabel

import (
	"errors"
	"fmt"

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
}

// DefaultConfig is what rwfix runs with when no configuration file is given.
func DefaultConfig() Config {
	return Config{Presets: []string{PresetLiteLLM}}
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
	return errors.Join(errs...)
}
