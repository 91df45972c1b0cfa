package a2a

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	legacy "github.com/a2aproject/a2a-go/a2a"
	sdk "github.com/a2aproject/a2a-go/v2/a2a"
)

func method(t testing.TB, name string) Method {
	t.Helper()
	m, ok := LookupMethod(name)
	if !ok || !m.PushConfig() {
		t.Fatalf("%s is not a push config method", name)
	}
	return m
}

func TestParsePushRequest(t *testing.T) {
	full := PushConfig{ID: "c1", TaskID: "t1", URL: "https://hooks.example/x", Token: "tok", Scheme: "Bearer", Credentials: "cred"}
	for _, tc := range []struct {
		name, method, params string
		want                 PushRequest
		err                  error
	}{
		{"v1 create", "CreateTaskPushNotificationConfig",
			`{"taskId":"t1","id":"c1","url":"https://hooks.example/x","token":"tok","authentication":{"scheme":"Bearer","credentials":"cred"}}`,
			PushRequest{TaskID: "t1", Config: full}, nil},
		{"v1 create without id", "CreateTaskPushNotificationConfig", `{"taskId":"t1","url":"https://hooks.example/x"}`,
			PushRequest{TaskID: "t1", Config: PushConfig{TaskID: "t1", URL: "https://hooks.example/x"}}, nil},
		{"v1 create without url", "CreateTaskPushNotificationConfig", `{"taskId":"t1"}`, PushRequest{}, ErrPushNoURL},
		{"v1 create without task", "CreateTaskPushNotificationConfig", `{"url":"https://hooks.example/x"}`, PushRequest{}, ErrPushNoTask},
		{"v1 get", "GetTaskPushNotificationConfig", `{"taskId":"t1","id":"c1"}`, PushRequest{TaskID: "t1", ConfigID: "c1"}, nil},
		{"v1 get without id", "GetTaskPushNotificationConfig", `{"taskId":"t1"}`, PushRequest{}, ErrPushNoID},
		{"v1 list", "ListTaskPushNotificationConfigs", `{"taskId":"t1","pageSize":5}`, PushRequest{TaskID: "t1"}, nil},
		{"v1 delete", "DeleteTaskPushNotificationConfig", `{"taskId":"t1","id":"c1"}`, PushRequest{TaskID: "t1", ConfigID: "c1"}, nil},
		{"v1 delete without id", "DeleteTaskPushNotificationConfig", `{"taskId":"t1"}`, PushRequest{}, ErrPushNoID},
		{"v0.3 set", "tasks/pushNotificationConfig/set",
			`{"taskId":"t1","pushNotificationConfig":{"id":"c1","url":"https://hooks.example/x","token":"tok","authentication":{"schemes":["Bearer"],"credentials":"cred"}}}`,
			PushRequest{TaskID: "t1", Config: full}, nil},
		{"v0.3 get by task", "tasks/pushNotificationConfig/get", `{"id":"t1"}`, PushRequest{TaskID: "t1"}, nil},
		{"v0.3 get", "tasks/pushNotificationConfig/get", `{"id":"t1","pushNotificationConfigId":"c1"}`, PushRequest{TaskID: "t1", ConfigID: "c1"}, nil},
		{"v0.3 list", "tasks/pushNotificationConfig/list", `{"id":"t1"}`, PushRequest{TaskID: "t1"}, nil},
		{"v0.3 delete", "tasks/pushNotificationConfig/delete", `{"id":"t1","pushNotificationConfigId":"c1"}`, PushRequest{TaskID: "t1", ConfigID: "c1"}, nil},
		{"v0.3 delete without config", "tasks/pushNotificationConfig/delete", `{"id":"t1"}`, PushRequest{}, ErrPushNoID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePushRequest(json.RawMessage(tc.params), method(t, tc.method))
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestCheckPushConfigBounds(t *testing.T) {
	ok := PushConfig{URL: "https://hooks.example/x"}
	for name, c := range map[string]PushConfig{
		"long url":          {URL: "https://h/" + strings.Repeat("a", MaxPushURL)},
		"long token":        {URL: ok.URL, Token: strings.Repeat("a", MaxPushToken+1)},
		"long credentials":  {URL: ok.URL, Scheme: "Bearer", Credentials: strings.Repeat("a", MaxPushCredentials+1)},
		"credentials alone": {URL: ok.URL, Credentials: "x"},
		"scheme with space": {URL: ok.URL, Scheme: "Bearer x"},
		"token with CRLF":   {URL: ok.URL, Token: "a\r\nX-Evil: 1"},
		"long id":           {URL: ok.URL, ID: strings.Repeat("a", MaxPushConfigID+1)},
	} {
		if err := CheckPushConfig(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := CheckPushConfig(ok); err != nil {
		t.Errorf("plain config refused: %v", err)
	}
}

// The answers decode as the A2A SDKs' own types, field for field.
func TestPushConfigJSONMatchesSDKs(t *testing.T) {
	c := PushConfig{ID: "c1", TaskID: "t1", URL: "https://hooks.example/x", Token: "tok", Scheme: "Bearer", Credentials: "cred"}
	var v1 sdk.PushConfig
	if err := json.Unmarshal(PushConfigJSON(V1, c), &v1); err != nil {
		t.Fatal(err)
	}
	if v1.ID != "c1" || v1.TaskID != "t1" || v1.URL != c.URL || v1.Token != "tok" || v1.Auth == nil || v1.Auth.Scheme != "Bearer" || v1.Auth.Credentials != "cred" {
		t.Errorf("v1.0 answer read by the SDK: %+v", v1)
	}
	var v03 legacy.TaskPushConfig
	if err := json.Unmarshal(PushConfigJSON(V03, c), &v03); err != nil {
		t.Fatal(err)
	}
	if v03.TaskID != "t1" || v03.Config.ID != "c1" || v03.Config.URL != c.URL || v03.Config.Token != "tok" || v03.Config.Auth == nil ||
		len(v03.Config.Auth.Schemes) != 1 || v03.Config.Auth.Schemes[0] != "Bearer" || v03.Config.Auth.Credentials != "cred" {
		t.Errorf("v0.3 answer read by the SDK: %+v", v03)
	}
	var list sdk.ListTaskPushConfigResponse
	if err := json.Unmarshal(PushConfigListJSON(V1, []PushConfig{c, c}), &list); err != nil || len(list.Configs) != 2 {
		t.Errorf("v1.0 list: %+v, %v", list, err)
	}
	var list03 []legacy.TaskPushConfig
	if err := json.Unmarshal(PushConfigListJSON(V03, nil), &list03); err != nil || list03 == nil || len(list03) != 0 {
		t.Errorf("v0.3 empty list: %s, %v", PushConfigListJSON(V03, nil), err)
	}
}

func TestTakeSendPushConfig(t *testing.T) {
	for _, tc := range []struct {
		name   string
		d      Dialect
		params string
		want   *PushConfig
		rest   string // what must be left of configuration
	}{
		{"v1", V1, `{"message":{"messageId":"m"},"configuration":{"returnImmediately":true,"taskPushNotificationConfig":{"url":"https://h/x","token":"tok","authentication":{"scheme":"Bearer","credentials":"c"}}}}`,
			&PushConfig{URL: "https://h/x", Token: "tok", Scheme: "Bearer", Credentials: "c"}, `{"returnImmediately":true}`},
		{"v0.3", V03, `{"message":{"messageId":"m"},"configuration":{"blocking":false,"pushNotificationConfig":{"id":"c1","url":"https://h/x","authentication":{"schemes":["Basic"],"credentials":"c"}}}}`,
			&PushConfig{ID: "c1", URL: "https://h/x", Scheme: "Basic", Credentials: "c"}, `{"blocking":false}`},
		{"v1 with the v0.3 key", V1, `{"message":{"messageId":"m"},"configuration":{"pushNotificationConfig":{"url":"https://h/x"}}}`,
			&PushConfig{URL: "https://h/x"}, `{}`},
		{"none", V1, `{"message":{"messageId":"m"},"configuration":{"returnImmediately":true}}`, nil, `{"returnImmediately":true}`},
		{"no configuration", V03, `{"message":{"messageId":"m"}}`, nil, ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, got, err := TakeSendPushConfig(json.RawMessage(tc.params), tc.d)
			if err != nil {
				t.Fatal(err)
			}
			if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
				t.Fatalf("config = %+v, want %+v", got, tc.want)
			}
			var p map[string]json.RawMessage
			if err := json.Unmarshal(out, &p); err != nil {
				t.Fatal(err)
			}
			if string(p["configuration"]) != tc.rest {
				t.Errorf("configuration left = %s, want %s", p["configuration"], tc.rest)
			}
			if strings.Contains(string(out), "https://h/x") {
				t.Errorf("the webhook URL is still in the params sent to the agent: %s", out)
			}
		})
	}
	if _, _, err := TakeSendPushConfig(json.RawMessage(`{"configuration":{"taskPushNotificationConfig":{"token":"x"}}}`), V1); !errors.Is(err, ErrPushNoURL) {
		t.Errorf("config without url: err = %v", err)
	}
}

// FuzzParsePushRequest: no panic; a config that parses encodes to params that parse to the
// same config, in both dialects.
func FuzzParsePushRequest(f *testing.F) {
	f.Add(`{"taskId":"t1","id":"c1","url":"https://hooks.example/x","token":"tok","authentication":{"scheme":"Bearer","credentials":"cred"}}`, true)
	f.Add(`{"taskId":"t1","pushNotificationConfig":{"url":"https://h/x","authentication":{"schemes":[],"credentials":""}}}`, false)
	f.Add(`{"taskId":"t1","pushNotificationConfig":null}`, false)
	f.Add(`{"taskId":"","url":"x"}`, true)
	f.Fuzz(func(t *testing.T, params string, v1 bool) {
		name := "tasks/pushNotificationConfig/set"
		if v1 {
			name = "CreateTaskPushNotificationConfig"
		}
		m := method(t, name)
		r, err := ParsePushRequest(json.RawMessage(params), m)
		if err != nil {
			return
		}
		again, err := ParsePushRequest(PushConfigJSON(m.Dialect, r.Config), m)
		if err != nil {
			t.Fatalf("re-parsing %s: %v", PushConfigJSON(m.Dialect, r.Config), err)
		}
		if again != r {
			t.Fatalf("round trip: %+v, then %+v", r, again)
		}
	})
}
