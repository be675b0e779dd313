package main

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v2"

	"github.com/rwfix/rwfix/relabel"
	"github.com/rwfix/rwfix/remotewrite"
	"github.com/rwfix/rwfix/remotewrite/offline"
)

// fileConfig is the configuration file. The repair settings sit at the top
// level (presets, relabel_configs) so a write_relabel_configs block pastes in
// unchanged.
type fileConfig struct {
	// Repair is a named field, not embedded: embedding would promote
	// relabel.Config's UnmarshalYAML and hide the upstreams key.
	Repair    relabel.Config               `yaml:",inline"`
	Upstreams []remotewrite.UpstreamConfig `yaml:"upstreams,omitempty"`
	Limits    remotewrite.Limits           `yaml:"limits,omitempty"`
}

func (c *fileConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = fileConfig{Repair: relabel.DefaultConfig(), Limits: remotewrite.DefaultLimits()}
	type plain fileConfig
	return unmarshal((*plain)(c))
}

// loadConfig reads and validates the file ("" means the defaults). Upstream
// URLs from flags are appended to the file's upstreams.
func loadConfig(path string, flagURLs []string, flagTimeout time.Duration) (*fileConfig, error) {
	cfg := &fileConfig{Repair: relabel.DefaultConfig(), Limits: remotewrite.DefaultLimits()}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		if err := yaml.UnmarshalStrict(data, cfg); err != nil {
			return nil, fmt.Errorf("parsing %s: %w", path, offline.HumanError(err))
		}
		dir := filepath.Dir(path)
		for i := range cfg.Upstreams {
			cfg.Upstreams[i].HTTPClientConfig.SetDirectory(dir) // credential files relative to the config file
		}
	}
	for _, u := range flagURLs {
		pu, err := url.Parse(u)
		if err != nil {
			return nil, fmt.Errorf("--upstream.url %q: %w", u, err)
		}
		cfg.Upstreams = append(cfg.Upstreams, remotewrite.UpstreamConfig{
			URL: &config.URL{URL: pu}, Timeout: model.Duration(flagTimeout),
			HTTPClientConfig: config.DefaultHTTPClientConfig,
		})
	}
	if err := cfg.Repair.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.Limits.Validate(); err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for i := range cfg.Upstreams {
		if err := cfg.Upstreams[i].Validate(); err != nil {
			return nil, fmt.Errorf("upstreams[%d]: %w", i, err)
		}
		if names[cfg.Upstreams[i].Name] {
			return nil, fmt.Errorf("upstreams[%d]: name %q used twice; give each upstream a distinct name", i, cfg.Upstreams[i].Name)
		}
		names[cfg.Upstreams[i].Name] = true
	}
	return cfg, nil
}

// parseRepair reads the repair part of a configuration given as text (the
// playground's): the rest of the file (upstreams, limits) is checked but not
// used. Credential files cannot be read from pasted text.
func parseRepair(data []byte) (relabel.Config, error) {
	cfg := &fileConfig{Repair: relabel.DefaultConfig(), Limits: remotewrite.DefaultLimits()}
	if err := yaml.UnmarshalStrict(data, cfg); err != nil {
		return relabel.Config{}, offline.HumanError(err)
	}
	if err := cfg.Repair.Validate(); err != nil {
		return relabel.Config{}, err
	}
	cfg.Repair.Collision.Warmup = 0
	return cfg.Repair, nil
}

// redactedYAML is a configuration as YAML with every secret shown as
// <secret> (prometheus/common's Secret does that) and passwords in URLs as
// xxxxx.
func redactedYAML(cfg *fileConfig) ([]byte, error) {
	if cfg == nil {
		return nil, nil
	}
	return yaml.Marshal(cfg)
}
