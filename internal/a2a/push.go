package a2a

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Bounds of a push notification config: it is stored in the task's journal record, so its
// size is bounded (10 configs of these sizes are well under the record limit).
const (
	MaxPushURL         = 2048
	MaxPushToken       = 1024
	MaxPushCredentials = 4096
	MaxPushScheme      = 64
	MaxPushConfigID    = 128
)

// PushConfig is a push notification config in the gateway's own words, the same for both
// dialects: v1.0 TaskPushNotificationConfig, v0.3 TaskPushNotificationConfig around a
// PushNotificationConfig. Token and Credentials are secrets.
type PushConfig struct {
	ID     string
	TaskID string
	URL    string
	Token  string
	// Scheme and Credentials are the authentication the receiver asks for (v1.0
	// authentication.scheme; v0.3 the first of authentication.schemes).
	Scheme      string
	Credentials string
}

// PushRequest is what a push config method asks: the task, and the config to store (set) or
// the id of one (get, delete; empty in a v0.3 get means the task's first config).
type PushRequest struct {
	TaskID   string
	ConfigID string
	Config   PushConfig
}

// Errors of ParsePushRequest and the push config readers; the gateway answers them with
// -32602.
var (
	ErrPushNoTask = errors.New("the task id is required")
	ErrPushNoURL  = errors.New(`the push notification config needs a "url"`)
	ErrPushNoID   = errors.New("the push notification config id is required")
)

type v1PushConfig struct {
	TaskID         string          `json:"taskId,omitempty"`
	ID             string          `json:"id,omitempty"`
	URL            string          `json:"url,omitempty"`
	Token          string          `json:"token,omitempty"`
	Authentication *v1PushAuth     `json:"authentication,omitempty"`
	Tenant         json.RawMessage `json:"tenant,omitempty"`
}

type v1PushAuth struct {
	Scheme      string `json:"scheme,omitempty"`
	Credentials string `json:"credentials,omitempty"`
}

type v03PushConfig struct {
	ID             string       `json:"id,omitempty"`
	URL            string       `json:"url"`
	Token          string       `json:"token,omitempty"`
	Authentication *v03PushAuth `json:"authentication,omitempty"`
}

type v03PushAuth struct {
	Schemes     []string `json:"schemes"`
	Credentials string   `json:"credentials,omitempty"`
}

type v03TaskPushConfig struct {
	TaskID string        `json:"taskId"`
	Config v03PushConfig `json:"pushNotificationConfig"`
}

func (c v1PushConfig) config() PushConfig {
	p := PushConfig{ID: c.ID, TaskID: c.TaskID, URL: c.URL, Token: c.Token}
	if a := c.Authentication; a != nil {
		p.Scheme, p.Credentials = a.Scheme, a.Credentials
	}
	return p
}

func (c v03PushConfig) config(taskID string) PushConfig {
	p := PushConfig{ID: c.ID, TaskID: taskID, URL: c.URL, Token: c.Token}
	if a := c.Authentication; a != nil {
		if len(a.Schemes) > 0 {
			p.Scheme = a.Schemes[0]
		}
		p.Credentials = a.Credentials
	}
	return p
}

// ParsePushRequest reads the params of a push config method (m.PushConfig()) in m's dialect.
// A config to set is checked by CheckPushConfig.
func ParsePushRequest(params json.RawMessage, m Method) (PushRequest, error) {
	if params == nil {
		return PushRequest{}, errors.New(`"params" is required`)
	}
	var r PushRequest
	switch {
	case m.Kind == KindPushSet && m.Dialect == V1:
		var c v1PushConfig
		if err := json.Unmarshal(params, &c); err != nil {
			return r, err
		}
		r.TaskID, r.Config = c.TaskID, c.config()
	case m.Kind == KindPushSet:
		var c v03TaskPushConfig
		if err := json.Unmarshal(params, &c); err != nil {
			return r, err
		}
		r.TaskID, r.Config = c.TaskID, c.Config.config(c.TaskID)
	case m.Dialect == V1:
		var p struct {
			TaskID string `json:"taskId"`
			ID     string `json:"id"`
		}
		if err := json.Unmarshal(params, &p); err != nil {
			return r, err
		}
		r.TaskID, r.ConfigID = p.TaskID, p.ID
	default:
		var p struct {
			ID       string `json:"id"`
			ConfigID string `json:"pushNotificationConfigId"`
		}
		if err := json.Unmarshal(params, &p); err != nil {
			return r, err
		}
		r.TaskID, r.ConfigID = p.ID, p.ConfigID
	}
	if r.TaskID == "" {
		return r, ErrPushNoTask
	}
	switch {
	case m.Kind == KindPushSet:
		r.Config.TaskID = r.TaskID
		return r, CheckPushConfig(r.Config)
	case m.Kind == KindPushDelete && r.ConfigID == "",
		m.Kind == KindPushGet && r.ConfigID == "" && m.Dialect == V1:
		return r, ErrPushNoID
	}
	return r, nil
}

// CheckPushConfig checks the form of a config: a URL and bounded sizes. Which URLs may be
// called is the gateway's decision.
func CheckPushConfig(c PushConfig) error {
	switch {
	case c.URL == "":
		return ErrPushNoURL
	case len(c.URL) > MaxPushURL:
		return fmt.Errorf("the push notification url is %d bytes; at most %d are allowed", len(c.URL), MaxPushURL)
	case len(c.Token) > MaxPushToken:
		return fmt.Errorf("the push notification token is %d bytes; at most %d are allowed", len(c.Token), MaxPushToken)
	case len(c.Credentials) > MaxPushCredentials:
		return fmt.Errorf("the push notification credentials are %d bytes; at most %d are allowed", len(c.Credentials), MaxPushCredentials)
	case len(c.Scheme) > MaxPushScheme || strings.ContainsAny(c.Scheme, " \t\r\n"):
		return fmt.Errorf("the push notification authentication scheme must be one token of at most %d bytes", MaxPushScheme)
	case c.Credentials != "" && c.Scheme == "":
		return errors.New("push notification credentials need an authentication scheme (Bearer, Basic)")
	case len(c.ID) > MaxPushConfigID:
		return fmt.Errorf("the push notification config id is %d bytes; at most %d are allowed", len(c.ID), MaxPushConfigID)
	case strings.ContainsAny(c.Token+c.Credentials, "\r\n"):
		return errors.New("the push notification token and credentials must not contain line breaks")
	}
	return nil
}

// PushConfigJSON encodes c as the push config methods answer it in dialect d.
func PushConfigJSON(d Dialect, c PushConfig) json.RawMessage {
	var v any
	if d == V03 {
		pc := v03PushConfig{ID: c.ID, URL: c.URL, Token: c.Token}
		if c.Scheme != "" {
			pc.Authentication = &v03PushAuth{Schemes: []string{c.Scheme}, Credentials: c.Credentials}
		}
		v = v03TaskPushConfig{TaskID: c.TaskID, Config: pc}
	} else {
		pc := v1PushConfig{TaskID: c.TaskID, ID: c.ID, URL: c.URL, Token: c.Token}
		if c.Scheme != "" {
			pc.Authentication = &v1PushAuth{Scheme: c.Scheme, Credentials: c.Credentials}
		}
		v = pc
	}
	b, _ := json.Marshal(v) // strings only: cannot fail
	return b
}

// PushConfigListJSON encodes the answer of a list method: v1.0 {"configs": [...]}, v0.3 an
// array.
func PushConfigListJSON(d Dialect, cs []PushConfig) json.RawMessage {
	items := make([]json.RawMessage, 0, len(cs))
	for _, c := range cs {
		items = append(items, PushConfigJSON(d, c))
	}
	var v any = items
	if d == V1 {
		v = struct {
			Configs []json.RawMessage `json:"configs"`
		}{items}
	}
	b, _ := json.Marshal(v)
	return b
}

// PushDeletedJSON is the answer of a delete method: v1.0 an empty object
// (google.protobuf.Empty), v0.3 null.
func PushDeletedJSON(d Dialect) json.RawMessage {
	if d == V03 {
		return json.RawMessage("null")
	}
	return json.RawMessage("{}")
}

// sendConfigKeys are the keys of a send's configuration that hold a push notification config:
// v1.0 taskPushNotificationConfig, v0.3 pushNotificationConfig (accepted in v1.0 too, as
// drafts of 1.0 spelled it).
var sendConfigKeys = []string{"taskPushNotificationConfig", "pushNotificationConfig"}

// TakeSendPushConfig returns the push notification config of a send (SendMessage,
// message/send and their streaming variants), if it has one, and params without it: the
// gateway keeps the config and the agent never sees it. The config is checked by
// CheckPushConfig; its TaskID is empty.
func TakeSendPushConfig(params json.RawMessage, d Dialect) (json.RawMessage, *PushConfig, error) {
	var p map[string]json.RawMessage
	if err := json.Unmarshal(params, &p); err != nil {
		return nil, nil, err
	}
	raw, ok := p["configuration"]
	if !ok || bytes.Equal(raw, []byte("null")) {
		return params, nil, nil
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, nil, fmt.Errorf("params.configuration: %w", err)
	}
	var found *PushConfig
	for _, k := range sendConfigKeys {
		v, ok := cfg[k]
		if !ok {
			continue
		}
		delete(cfg, k)
		if found != nil || bytes.Equal(v, []byte("null")) {
			continue
		}
		var c PushConfig
		if d == V03 || k == "pushNotificationConfig" {
			var pc v03PushConfig
			if err := json.Unmarshal(v, &pc); err != nil {
				return nil, nil, fmt.Errorf("params.configuration.%s: %w", k, err)
			}
			c = pc.config("")
		} else {
			var pc v1PushConfig
			if err := json.Unmarshal(v, &pc); err != nil {
				return nil, nil, fmt.Errorf("params.configuration.%s: %w", k, err)
			}
			c = pc.config()
			c.TaskID = ""
		}
		if err := CheckPushConfig(c); err != nil {
			return nil, nil, fmt.Errorf("params.configuration.%s: %w", k, err)
		}
		found = &c
	}
	if found == nil {
		return params, nil, nil
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, nil, err
	}
	p["configuration"] = b
	out, err := json.Marshal(p)
	if err != nil {
		return nil, nil, err
	}
	return out, found, nil
}
