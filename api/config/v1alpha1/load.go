package v1alpha1

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// MaxFileSize bounds a configuration file.
const MaxFileSize = 1 << 20

// Load reads, defaults and validates the configuration file at path. Errors name the file and the
// field.
func Load(path string) (*GatewayConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if n > MaxFileSize {
		return nil, fmt.Errorf("%s: file is larger than %d bytes", path, MaxFileSize)
	}
	c, err := Decode(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Decode decodes one YAML (or JSON) document strictly, then defaults and validates it. Every
// problem found is returned, joined; each names its field.
func Decode(data []byte) (*GatewayConfig, error) {
	c, err := DecodeStrict(data)
	if err != nil {
		return nil, err
	}
	c.SetDefaults()
	if errs := c.Validate(); len(errs) > 0 {
		return nil, errs.ToAggregate()
	}
	return c, nil
}

// DecodeStrict decodes without defaulting or validating: an unknown field, a duplicate key, a
// wrong type or a second YAML document is an error.
func DecodeStrict(data []byte) (*GatewayConfig, error) {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("invalid YAML: %s", strings.TrimPrefix(err.Error(), "error converting YAML to JSON: "))
	}
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return nil, errors.New("empty configuration: expected apiVersion " + APIVersion + ", kind " + KindGatewayConfig)
	}
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(js, &head); err != nil {
		return nil, fmt.Errorf("a configuration must be a YAML mapping with apiVersion and kind: %w", err)
	}
	if head.APIVersion != APIVersion || head.Kind != KindGatewayConfig {
		return nil, fmt.Errorf("apiVersion %q, kind %q is not supported: expected apiVersion %s, kind %s",
			head.APIVersion, head.Kind, APIVersion, KindGatewayConfig)
	}
	var c GatewayConfig
	strict, err := sigsjson.UnmarshalStrict(js, &c, sigsjson.DisallowUnknownFields)
	if err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, fmt.Errorf("%s: Invalid value: a JSON %s, but must be %s", te.Field, te.Value, te.Type)
		}
		return nil, err
	}
	if len(strict) > 0 {
		return nil, errors.Join(strict...)
	}
	return &c, nil
}
