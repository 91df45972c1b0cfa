package v1alpha1

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

const full = `apiVersion: agentplane.io/v1alpha1
kind: GatewayConfig
listeners:
- name: public
  address: 0.0.0.0:8443
  tls: {certFile: /etc/ap/tls.crt, keyFile: /etc/ap/tls.key, clientCAFile: /etc/ap/ca.crt, minVersion: "1.3"}
- address: 127.0.0.1:8080
auth:
  apiKeys:
  - {subject: ehr-bridge, tenant: clinic-a, groups: [clinicians], sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef}
  - {agent: triage, tenant: clinic-a, keyEnv: TRIAGE_KEY}
  - {subject: batch-job, tenant: clinic-a, keyFile: /etc/ap/batch.key}
  jwt:
    issuer: https://idp.example
    audiences: [agentplane]
    clockSkew: 1m
    tenantClaim: org
  mtls:
    subjectFrom: URISAN
    tenants: [{match: "spiffe://clinic-a/*", tenant: clinic-a, groups: [services]}]
policies:
- {name: clinicians, groups: [clinicians], agents: ["*"], maxPriority: urgent}
- {name: triage-calls-radiology, subjects: ["agent:triage"], agents: [radiology], skills: [ct-read]}
- {name: admins, subjects: [alice], agents: ["*"], tenantAdmin: true}
limits: {maxBodyBytes: 1048576, readTimeout: 30s}
rateLimits:
- {name: per-caller, requestsPerSecond: 2.5, tokensPerMinute: 60000}
audit:
  path: /var/lib/agentplane/audit/audit.jsonl
  fsync: interval
  hmacKeyFile: /etc/ap/audit.key
  checkpoints: {path: /mnt/audit-checkpoints/checkpoints.jsonl}
redaction:
  custom: [{name: insurance-id, regex: "\\bINS-[0-9]{8}\\b"}]
pushNotifications: {allowedNetworks: [10.0.0.0/8, "fd00::/8"], timeout: 5s}
`

const minimal = "apiVersion: agentplane.io/v1alpha1\nkind: GatewayConfig\n"

func TestDecodeFull(t *testing.T) {
	c, err := Decode([]byte(full))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if pn := c.PushNotifications; len(pn.AllowedNetworks) != 2 || pn.Timeout.Duration != 5*time.Second || pn.GiveUpAfter.Duration != DefaultPushGiveUpAfter {
		t.Errorf("pushNotifications = %+v", pn)
	}
	if got := c.Listeners[1].Name; got != "listener-1" {
		t.Errorf("default listener name = %q", got)
	}
	if got := c.Listeners[0].TLS.ClientAuth; got != ClientAuthVerifyIfGiven {
		t.Errorf("clientAuth default = %q", got)
	}
	if got := c.Auth.JWT.ClockSkew.Duration; got != time.Minute {
		t.Errorf("clockSkew = %v", got)
	}
	if got := c.Auth.JWT.Algorithms; !reflect.DeepEqual(got, PublicKeyAlgorithms) {
		t.Errorf("algorithms = %v", got)
	}
	if got := c.RateLimits[0].Burst; got != 3 {
		t.Errorf("burst default = %d, want ceil(2.5) = 3", got)
	}
	if got := c.RateLimits[0].TokenBurst; got != 60000 {
		t.Errorf("tokenBurst default = %d", got)
	}
	if got := c.Policies[1].MaxPriority; got != PriorityNormal {
		t.Errorf("maxPriority default = %q", got)
	}
	if got := c.Audit.FsyncInterval.Duration; got != time.Second {
		t.Errorf("fsyncInterval default = %v", got)
	}
	if got := c.Audit.Checkpoints.Interval.Duration; got != time.Minute {
		t.Errorf("checkpoints.interval default = %v", got)
	}
	if got := c.Redaction.Patterns; !reflect.DeepEqual(got, BuiltinPatterns) {
		t.Errorf("patterns default = %v", got)
	}
}

func TestDecodeMinimal(t *testing.T) {
	c, err := Decode([]byte(minimal))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if len(c.Listeners) != 1 || c.Listeners[0].Address != DefaultListenAddress {
		t.Errorf("listeners = %+v", c.Listeners)
	}
	if c.Audit.Fsync != FsyncAlways || c.Limits.MaxBodyBytes != DefaultMaxBodyBytes {
		t.Errorf("defaults not applied: %+v %+v", c.Audit, c.Limits)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"unknown field", minimal + "limits: {maxBodyByte: 10}\n", `unknown field "limits.maxBodyByte"`},
		{"duplicate key", minimal + "audit: {fsync: always, fsync: never}\n", `key "fsync" already set`},
		{"wrong type", minimal + "limits: {maxBodyBytes: lots}\n", `limits.maxBodyBytes`},
		{"wrong kind", "apiVersion: agentplane.io/v1alpha1\nkind: Agent\n", `kind "Agent" is not supported`},
		{"empty", "", "empty configuration"},
		{"not a mapping", "- a\n", "must be a YAML mapping"},
		{"plain http on the network", minimal + "listeners: [{address: 0.0.0.0:80}]\n", "listeners[0].tls: Required value"},
		{"bad port", minimal + "listeners: [{address: 127.0.0.1:http}]\n", "listeners[0].address"},
		{"tls without key", minimal + "listeners: [{address: 0.0.0.0:443, tls: {certFile: c}}]\n", "listeners[0].tls.keyFile: Required value"},
		{"tls 1.1", minimal + "listeners: [{address: 0.0.0.0:443, tls: {certFile: c, keyFile: k, minVersion: '1.1'}}]\n", "listeners[0].tls.minVersion: Unsupported value"},
		{"key with two sources", minimal + "auth: {apiKeys: [{subject: a, keyEnv: K, keyFile: f}]}\n", "auth.apiKeys[0]: Invalid value"},
		{"key without source", minimal + "auth: {apiKeys: [{subject: a}]}\n", "set exactly one of sha256, keyFile and keyEnv"},
		{"bad hash", minimal + "auth: {apiKeys: [{subject: a, sha256: abc}]}\n", "auth.apiKeys[0].sha256"},
		{"reserved subject", minimal + "auth: {apiKeys: [{subject: 'agent:triage', keyEnv: K}]}\n", `reserved`},
		{"subject and agent", minimal + "auth: {apiKeys: [{subject: a, agent: b, keyEnv: K}]}\n", "auth.apiKeys[0].agent: Forbidden"},
		{"bad agent name", minimal + "auth: {apiKeys: [{agent: Triage_1, keyEnv: K}]}\n", "auth.apiKeys[0].agent"},
		{"jwt none", minimal + "auth: {jwt: {issuer: 'https://i', audiences: [a], algorithms: [none]}}\n", `auth.jwt.algorithms[0]: Forbidden`},
		{"jwt hmac with jwks", minimal + "auth: {jwt: {issuer: 'https://i', audiences: [a], algorithms: [HS256]}}\n", "needs hmacSecretFile"},
		{"jwt hmac secret and jwks", minimal + "auth: {jwt: {issuer: 'https://i', audiences: [a], jwksURL: 'https://i/k', hmacSecretFile: s}}\n", "auth.jwt.hmacSecretFile: Forbidden"},
		{"jwt no audience", minimal + "auth: {jwt: {issuer: 'https://i'}}\n", "auth.jwt.audiences: Required value"},
		{"jwt http issuer", minimal + "auth: {jwt: {issuer: 'http://idp.example', audiences: [a]}}\n", "auth.jwt.issuer"},
		{"jwt skew", minimal + "auth: {jwt: {issuer: 'https://i', audiences: [a], clockSkew: 1h}}\n", "auth.jwt.clockSkew"},
		{"mtls without client CA", minimal + "auth: {mtls: {}}\n", "auth.mtls: Invalid value"},
		{"policy without agents", minimal + "policies: [{name: p, subjects: [a]}]\n", "policies[0].agents: Required value"},
		{"policy without subjects", minimal + "policies: [{name: p, agents: [a]}]\n", "policies[0].subjects: Required value"},
		{"policy priority", minimal + "policies: [{name: p, subjects: [a], agents: [b], maxPriority: stat}]\n", "policies[0].maxPriority: Unsupported value"},
		{"duplicate policy", minimal + "policies: [{name: p, subjects: [a], agents: [b]}, {name: p, subjects: [a], agents: [b]}]\n", "policies[1].name: Duplicate value"},
		{"limit too small", minimal + "limits: {maxBodyBytes: 5}\n", "limits.maxBodyBytes"},
		{"negative rate", minimal + "rateLimits: [{name: r, requestsPerSecond: -1}]\n", "rateLimits[0].requestsPerSecond"},
		{"fsync policy", minimal + "audit: {fsync: sometimes}\n", "audit.fsync: Unsupported value"},
		{"fsync interval without interval", minimal + "audit: {fsyncInterval: 1s}\n", "audit.fsyncInterval: Forbidden"},
		{"checkpoints without path", minimal + "audit: {hmacKeyFile: k, checkpoints: {interval: 1m}}\n", "audit.checkpoints.path: Required value"},
		{"checkpoints beside the log", minimal + "audit: {path: /var/audit/audit.jsonl, hmacKeyFile: k, checkpoints: {path: /var/audit/cp.jsonl}}\n", "audit.checkpoints.path: Invalid value"},
		{"checkpoints without a key", minimal + "audit: {checkpoints: {path: /mnt/cp.jsonl}}\n", "audit.checkpoints.keyFile: Required value"},
		{"checkpoint interval", minimal + "audit: {hmacKeyFile: k, checkpoints: {path: /mnt/cp.jsonl, interval: 100ms}}\n", "audit.checkpoints.interval: Invalid value"},
		{"checkpoints unknown field", minimal + "audit: {checkpoints: {path: /mnt/cp.jsonl, key: k}}\n", `unknown field "audit.checkpoints.key"`},
		{"bad regex", minimal + "redaction: {custom: [{name: x, regex: '(('}]}\n", "redaction.custom[0].regex"},
		{"empty-matching regex", minimal + "redaction: {custom: [{name: x, regex: 'a*'}]}\n", "must not match the empty string"},
		{"unknown pattern", minimal + "redaction: {patterns: [dob]}\n", "redaction.patterns[0]: Unsupported value"},
		{"redaction fields, removed", minimal + "redaction: {fields: ['**']}\n", `unknown field "redaction.fields"`},
		{"push network not a prefix", minimal + "pushNotifications: {allowedNetworks: [10.0.0.1]}\n", "pushNotifications.allowedNetworks[0]: Invalid value"},
		{"push timeout", minimal + "pushNotifications: {timeout: 1h}\n", "pushNotifications.timeout: Invalid value"},
		{"push give-up", minimal + "pushNotifications: {giveUpAfter: 0s}\n", "pushNotifications.giveUpAfter: Invalid value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.doc))
			if err == nil {
				t.Fatalf("Decode succeeded, want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decode error = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestSecretHashNotEchoed(t *testing.T) {
	const h = "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"
	_, err := Decode([]byte(minimal + "auth: {apiKeys: [{subject: a, sha256: " + h + "}]}\n"))
	if err == nil || strings.Contains(err.Error(), h) {
		t.Fatalf("error = %v; want an error that does not echo the hash", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(p, []byte(full), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err != nil {
		t.Fatalf("Load: %v", err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(minimal+"audit: {fsync: no}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil || !strings.Contains(err.Error(), "bad.yaml: audit.fsync") {
		t.Fatalf("Load error = %v, want it to name the file and field", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Fatal("Load of a missing file succeeded")
	}
}

func TestSetDefaultsIdempotent(t *testing.T) {
	c, err := Decode([]byte(full))
	if err != nil {
		t.Fatal(err)
	}
	before, _ := yaml.Marshal(c)
	c.SetDefaults()
	after, _ := yaml.Marshal(c)
	if string(before) != string(after) {
		t.Fatalf("SetDefaults is not idempotent:\n%s\n---\n%s", before, after)
	}
}

// FuzzDecode checks that no input panics the decoder, and that whatever decodes survives
// marshal → decode unchanged.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(full))
	f.Add([]byte(minimal))
	f.Add([]byte(minimal + "rateLimits: [{name: r, requestsPerSecond: 0.1}]\n"))
	f.Add([]byte(minimal + "limits: {maxBodyByte: 10}\n"))
	f.Add([]byte(minimal + "audit: {fsync: always, fsync: never}\n"))
	f.Add([]byte("{}"))
	f.Add([]byte("- [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Decode(data)
		if err != nil {
			return
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		again, err := Decode(out)
		if err != nil {
			t.Fatalf("re-decoding a decoded config failed: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(c, again) {
			b, _ := yaml.Marshal(again)
			t.Fatalf("round trip changed the config:\n%s\n---\n%s", out, b)
		}
	})
}
