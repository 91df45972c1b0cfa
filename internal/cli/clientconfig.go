package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"

	configv1 "github.com/agentplane/agentplane/api/config/v1alpha1"
)

// defaultConfigHint is how --help names the default config file.
const defaultConfigHint = "~/.config/agentplane/config.yaml"

// userConfigDir is os.UserConfigDir, replaceable in tests.
var userConfigDir = os.UserConfigDir

// configPath is the config file of named gateways: --agentplane-config, else
// $AGENTPLANE_CONFIG, else config.yaml in the user's config directory ("" when there is none).
func configPath(flag string, getenv func(string) string) string {
	if flag != "" {
		return flag
	}
	if p := getenv(envConfig); p != "" {
		return p
	}
	dir, err := userConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "agentplane", "config.yaml")
}

// loadClientConfig reads the config file at path strictly. A missing file (or no path) is an
// empty configuration.
func loadClientConfig(path string) (*configv1.ClientConfig, error) {
	empty := &configv1.ClientConfig{APIVersion: configv1.APIVersion, Kind: configv1.KindClientConfig}
	if path == "" {
		return empty, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return empty, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(f, configv1.MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	if n > configv1.MaxFileSize {
		return nil, fmt.Errorf("config file %s: larger than %d bytes", path, configv1.MaxFileSize)
	}
	c, err := configv1.DecodeClientConfig(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return c, nil
}

// saveClientConfig validates c and writes it to path with mode 0600 (it may hold tokens), in a
// directory it creates with mode 0700, replacing the file at once so that a reader never sees
// half of it.
func saveClientConfig(path string, c *configv1.ClientConfig) error {
	if path == "" {
		return errors.New("no config file: set --agentplane-config or " + envConfig)
	}
	if errs := c.Validate(); len(errs) > 0 {
		return errs.ToAggregate()
	}
	data, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".config-*.yaml")
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("config file: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("config file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("config file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	return nil
}

// filepath0 is the directory relative paths of the config file at path are resolved against.
func filepath0(path string) string {
	if path == "" {
		return "."
	}
	return filepath.Dir(path)
}

// resolvePath resolves p, relative to base unless absolute.
func resolvePath(base, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(base, p)
}

// redacted is c with its inline tokens replaced, for config view.
func redacted(c *configv1.ClientConfig) *configv1.ClientConfig {
	out := *c
	out.Contexts = make([]configv1.ClientContext, len(c.Contexts))
	for i, x := range c.Contexts {
		if x.Token != "" {
			x.Token = "REDACTED"
		}
		out.Contexts[i] = x
	}
	return &out
}
