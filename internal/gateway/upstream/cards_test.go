package upstream

import (
	"testing"

	"github.com/agentplane/agentplane/internal/a2a"
)

// An agent in a pod advertises the address it listens on (127.0.0.1, 0.0.0.0, a container name);
// the gateway keeps the card's paths but always sends to the replica it chose.
func TestCardURLsAreMovedOntoTheReplica(t *testing.T) {
	const base = "http://10.88.0.3:8080"
	for _, tc := range []struct {
		name, card string
		want       map[a2a.Dialect]string
		wantErr    bool
	}{
		{"v1 card advertising loopback",
			`{"supportedInterfaces":[{"url":"http://127.0.0.1:8080/","protocolBinding":"JSONRPC","protocolVersion":"1.0"},
			  {"url":"http://127.0.0.1:8080/v03","protocolBinding":"JSONRPC","protocolVersion":"0.3"}]}`,
			map[a2a.Dialect]string{a2a.V1: base + "/", a2a.V03: base + "/v03"}, false},
		{"v0.3 card naming another host", `{"url":"https://attacker.example:443/rpc?x=1","protocolVersion":"0.3.0"}`,
			map[a2a.Dialect]string{a2a.V03: base + "/rpc?x=1"}, false},
		{"relative URL", `{"supportedInterfaces":[{"url":"/a2a","protocolBinding":"JSONRPC","protocolVersion":"1.0"}]}`,
			map[a2a.Dialect]string{a2a.V1: base + "/a2a"}, false},
		{"host without a path", `{"url":"http://agent:9000","protocolVersion":"0.3.0"}`,
			map[a2a.Dialect]string{a2a.V03: base + "/"}, false},
		{"not HTTP", `{"url":"file:///etc/passwd","protocolVersion":"0.3.0"}`, nil, true},
		{"unparsable", `{"url":"http://[::1","protocolVersion":"0.3.0"}`, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseInterfaces([]byte(tc.card), base)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parseInterfaces = %v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for d, u := range tc.want {
				if got[d] != u {
					t.Errorf("%s: %q, want %q", d, got[d], u)
				}
			}
		})
	}
}
