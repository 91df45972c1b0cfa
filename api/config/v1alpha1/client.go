package v1alpha1

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// KindClientConfig is the kind of the command line's file of named gateways.
const KindClientConfig = "ClientConfig"

// ClientConfig is the agentplane command line's file of named gateways, as a kubeconfig is
// kubectl's (default ~/.config/agentplane/config.yaml): each context names a gateway URL and
// the credentials to present to it. The commands that talk to a gateway (get, apply, logs,
// describe) use the current context unless flags or the environment say otherwise.
//
// Relative paths in a context are relative to the file's directory. The file may hold a token
// inline; it is then kept with mode 0600, and a token file is the better choice.
type ClientConfig struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`

	// CurrentContext names the context used when --context is not given.
	// +optional
	CurrentContext string `json:"currentContext,omitempty"`

	// Contexts are the named gateways, each with its credentials.
	// +optional
	Contexts []ClientContext `json:"contexts,omitempty"`
}

// ClientContext is one named gateway and the credentials to present to it. Credentials are sent
// only to its gateway.
type ClientContext struct {
	// Name of the context, as given to --context and config use-context.
	// +required
	Name string `json:"name"`
	// Gateway is the gateway's base URL, http or https, such as https://gateway.example:8443.
	// +required
	Gateway string `json:"gateway"`
	// Token is an API key or a bearer JWT, sent as "Authorization: Bearer". Prefer TokenFile.
	// +optional
	Token string `json:"token,omitempty"`
	// TokenFile is a file holding the token (a trailing newline is ignored), read at each use.
	// +optional
	TokenFile string `json:"tokenFile,omitempty"`
	// ClientCert is a PEM client certificate for mutual TLS; it needs ClientKey and an https
	// gateway.
	// +optional
	ClientCert string `json:"clientCert,omitempty"`
	// ClientKey is the PEM private key of ClientCert.
	// +optional
	ClientKey string `json:"clientKey,omitempty"`
	// CACert is a PEM bundle of the CAs the gateway's certificate must chain to, for a gateway
	// with a CA of its own (default: the system's roots).
	// +optional
	CACert string `json:"caCert,omitempty"`
}

// Context returns the context called name.
func (c *ClientConfig) Context(name string) (*ClientContext, bool) {
	for i := range c.Contexts {
		if c.Contexts[i].Name == name {
			return &c.Contexts[i], true
		}
	}
	return nil, false
}

// DecodeClientConfig decodes one YAML (or JSON) document strictly (an unknown field, a
// duplicate key, a wrong type is an error), fills apiVersion and kind when the document is
// empty, and validates it. Every problem found is returned, joined; each names its field.
func DecodeClientConfig(data []byte) (*ClientConfig, error) {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("invalid YAML: %s", strings.TrimPrefix(err.Error(), "error converting YAML to JSON: "))
	}
	c := &ClientConfig{APIVersion: APIVersion, Kind: KindClientConfig}
	if t := bytes.TrimSpace(js); len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return c, nil // an empty file is an empty configuration
	}
	strict, err := sigsjson.UnmarshalStrict(js, c, sigsjson.DisallowUnknownFields)
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
	if errs := c.Validate(); len(errs) > 0 {
		return nil, errs.ToAggregate()
	}
	return c, nil
}

// Validate checks a ClientConfig and returns every problem, each naming its field.
func (c *ClientConfig) Validate() field.ErrorList {
	var errs field.ErrorList
	if c.APIVersion != APIVersion {
		errs = append(errs, field.Invalid(field.NewPath("apiVersion"), c.APIVersion, "must be "+APIVersion))
	}
	if c.Kind != KindClientConfig {
		errs = append(errs, field.Invalid(field.NewPath("kind"), c.Kind, "must be "+KindClientConfig))
	}
	seen := map[string]bool{}
	for i, x := range c.Contexts {
		p := field.NewPath("contexts").Index(i)
		errs = append(errs, x.Validate(p)...)
		if x.Name != "" && seen[x.Name] {
			errs = append(errs, field.Duplicate(p.Child("name"), x.Name))
		}
		seen[x.Name] = true
	}
	if c.CurrentContext != "" && !seen[c.CurrentContext] {
		errs = append(errs, field.NotFound(field.NewPath("currentContext"), c.CurrentContext))
	}
	return errs
}

// Validate checks one context; p is its path in the file. Secrets are never echoed.
func (x *ClientContext) Validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case x.Name == "":
		errs = append(errs, field.Required(p.Child("name"), ""))
	case strings.ContainsFunc(x.Name, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		errs = append(errs, field.Invalid(p.Child("name"), x.Name, "must not contain spaces or control characters"))
	}
	https := false
	if x.Gateway == "" {
		errs = append(errs, field.Required(p.Child("gateway"), "the gateway's base URL, such as https://gateway.example:8443"))
	} else if u, err := url.Parse(x.Gateway); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		errs = append(errs, field.Invalid(p.Child("gateway"), x.Gateway, "must be an http or https URL with a host and no user information"))
	} else {
		https = u.Scheme == "https"
	}
	if x.Token != "" && x.TokenFile != "" {
		errs = append(errs, field.Forbidden(p.Child("token"), "give token or tokenFile, not both"))
	}
	if strings.ContainsAny(x.Token, " \t\r\n") {
		errs = append(errs, field.Invalid(p.Child("token"), "(redacted)", "must not contain spaces or line breaks"))
	}
	if (x.ClientCert == "") != (x.ClientKey == "") {
		errs = append(errs, field.Required(p.Child("clientKey"), "clientCert and clientKey go together"))
	}
	if !https && x.Gateway != "" && (x.ClientCert != "" || x.CACert != "") {
		errs = append(errs, field.Invalid(p.Child("gateway"), x.Gateway, "clientCert and caCert need an https gateway URL"))
	}
	return errs
}
