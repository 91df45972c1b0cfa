package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Group, version and kind of a gateway configuration file.
const (
	APIVersion        = "agentplane.io/v1alpha1"
	KindGatewayConfig = "GatewayConfig"
)

// GatewayConfig configures the A2A gateway's front door: who may connect, who may call which
// agent, how much, and what is recorded. Everything it does not allow is denied.
type GatewayConfig struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`

	// Listeners are the addresses the gateway serves on. Defaults to one plain-HTTP listener on
	// 127.0.0.1:8080.
	// +optional
	Listeners []Listener `json:"listeners,omitempty"`

	// Auth says how callers prove who they are. With no method configured every request to an
	// agent is refused with 401.
	// +optional
	Auth Auth `json:"auth,omitempty"`

	// Policies say which subjects may call which agents and skills. A request no policy allows is
	// refused with 403.
	// +optional
	Policies []Policy `json:"policies,omitempty"`

	// Limits bound the size and duration of what callers send.
	// +optional
	Limits Limits `json:"limits,omitempty"`

	// RateLimits bound requests and model tokens per subject and agent. The first rule that matches
	// a subject and agent applies; a request no rule matches is not rate limited.
	// +optional
	RateLimits []RateLimit `json:"rateLimits,omitempty"`

	// Audit configures the tamper-evident audit log.
	// +optional
	Audit Audit `json:"audit,omitempty"`

	// Redaction configures what is masked in logs, traces and the dashboard.
	// +optional
	Redaction Redaction `json:"redaction,omitempty"`

	// AgentHosts gives agents origins of their own: a request whose Host names an agent is that
	// agent's, with its card at the origin's root (/.well-known/agent-card.json, where RFC 8615
	// and the A2A specification put it) and JSON-RPC at "/". Every path of such a host is the
	// agent's, but /healthz and /readyz.
	// +optional
	AgentHosts AgentHosts `json:"agentHosts,omitempty"`

	// PushNotifications configures how the gateway calls the webhooks of A2A push
	// notification configs.
	// +optional
	PushNotifications PushNotifications `json:"pushNotifications,omitempty"`
}

// AgentHosts maps host names to agents. A host named in Hosts is routed by it; otherwise a host
// "<agent>.<domain>" is routed to the agent of that name.
type AgentHosts struct {
	// Domain is a DNS suffix under which each agent has a host of its name, such as
	// "agents.example.org" for triage.agents.example.org. A wildcard DNS record and certificate
	// for it are the operator's.
	// +optional
	Domain string `json:"domain,omitempty"`
	// Hosts maps a host name to the agent it serves, such as {"triage.hospital.example": "triage"}.
	// +optional
	Hosts map[string]string `json:"hosts,omitempty"`
}

// PushNotifications configures the gateway's A2A push notifications: on each state change of a
// task with push notification configs, the gateway POSTs the task to each config's URL,
// retrying with backoff until the receiver answers 2xx or GiveUpAfter has passed.
//
// Webhook URLs are checked against server-side request forgery when a config is created and
// again at each connection (on the address the name resolved to, so DNS rebinding does not
// help): loopback, link-local (including 169.254.169.254), private (RFC 1918, fc00::/7),
// CGNAT (100.64.0.0/10), unspecified, broadcast and multicast addresses are refused unless
// AllowedNetworks contains them.
type PushNotifications struct {
	// AllowedNetworks are CIDR prefixes (such as "10.0.0.0/8" or "127.0.0.1/32") that webhook
	// URLs may reach although they are not public, for receivers inside the operator's own
	// network. Defaults to none: only public addresses.
	// +optional
	AllowedNetworks []string `json:"allowedNetworks,omitempty"`
	// Timeout bounds one POST to a webhook, connection included. Defaults to 10s.
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// GiveUpAfter is how long a notification is retried (1s, 2s, 4s, ... at most 5m apart)
	// before the gateway gives up on it, logging and counting it. Defaults to 24h.
	// +optional
	GiveUpAfter *metav1.Duration `json:"giveUpAfter,omitempty"`
}

// Listener is one address the gateway serves on.
type Listener struct {
	// Name identifies the listener in logs and errors. Defaults to "listener-<index>".
	// +optional
	Name string `json:"name,omitempty"`
	// Address is host:port, such as "0.0.0.0:8443" or "127.0.0.1:8080".
	// +required
	Address string `json:"address"`
	// TLS, when set, serves HTTPS; without it the listener serves plain HTTP, which is allowed only
	// on a loopback address.
	// +optional
	TLS *ListenerTLS `json:"tls,omitempty"`
	// AllowPlaintext allows plain HTTP on a non-loopback address, for when TLS ends in front of
	// the gateway (an ingress or a service mesh). Credentials then cross that hop in clear.
	// +optional
	AllowPlaintext bool `json:"allowPlaintext,omitempty"`
}

// TLS versions a listener may require.
const (
	TLS12 = "1.2"
	TLS13 = "1.3"
)

// Client certificate modes.
const (
	// ClientAuthVerifyIfGiven asks for a client certificate and verifies one that is given; a
	// caller without one must authenticate another way.
	ClientAuthVerifyIfGiven = "VerifyIfGiven"
	// ClientAuthRequire refuses the TLS handshake without a valid client certificate.
	ClientAuthRequire = "Require"
)

// ListenerTLS is a listener's certificate and, for mutual TLS, the CA its clients' certificates
// must chain to.
type ListenerTLS struct {
	// CertFile is a PEM certificate chain.
	// +required
	CertFile string `json:"certFile"`
	// KeyFile is the PEM private key of CertFile.
	// +required
	KeyFile string `json:"keyFile"`
	// ClientCAFile is a PEM bundle of CAs for client certificates. Setting it turns on mutual TLS.
	// +optional
	ClientCAFile string `json:"clientCAFile,omitempty"`
	// ClientAuth is VerifyIfGiven (default) or Require; only with ClientCAFile.
	// +optional
	ClientAuth string `json:"clientAuth,omitempty"`
	// MinVersion is "1.2" (default) or "1.3".
	// +optional
	MinVersion string `json:"minVersion,omitempty"`
}

// Auth configures authentication. Methods are tried in the order API key, JWT, mTLS; the first
// that finds its kind of credential decides, and a credential that is present but wrong is never
// passed over to the next method.
type Auth struct {
	// APIKeys are static keys, each naming one subject or one agent.
	// +optional
	APIKeys []APIKey `json:"apiKeys,omitempty"`
	// JWT accepts bearer tokens from an identity provider.
	// +optional
	JWT *JWT `json:"jwt,omitempty"`
	// MTLS accepts verified client certificates. It needs a listener with tls.clientCAFile.
	// +optional
	MTLS *MTLS `json:"mtls,omitempty"`
}

// APIKey is one static key. Exactly one of sha256, keyFile and keyEnv is set. Keys are
// high-entropy random strings (at least 32 characters when given raw), so a plain SHA-256 of the
// key is a safe and fast way to store them: a slow password hash protects guessable secrets,
// which these are not.
type APIKey struct {
	// Subject is the caller's name, used by policies and recorded in the audit log. Names starting
	// with "agent:" are reserved; use Agent for a replica's key.
	// +optional
	Subject string `json:"subject,omitempty"`
	// Agent, instead of Subject, makes this the key of an agent's replicas calling the gateway;
	// its subject is "agent:<agent>" and its kind "agent".
	// +optional
	Agent string `json:"agent,omitempty"`
	// Tenant the subject belongs to.
	// +optional
	Tenant string `json:"tenant,omitempty"`
	// Groups the subject is in, for policies.
	// +optional
	Groups []string `json:"groups,omitempty"`
	// SHA256 is the lowercase hex SHA-256 of the key.
	// +optional
	SHA256 string `json:"sha256,omitempty"`
	// KeyFile is a file holding the raw key; read once at start and kept only as its hash.
	// +optional
	KeyFile string `json:"keyFile,omitempty"`
	// KeyEnv is an environment variable holding the raw key; read once at start.
	// +optional
	KeyEnv string `json:"keyEnv,omitempty"`
}

// JWT configures bearer tokens signed by an identity provider.
type JWT struct {
	// Issuer must equal the token's "iss". With neither jwksURL nor a shared secret, the keys are
	// found by OpenID Connect discovery at <issuer>/.well-known/openid-configuration.
	// +required
	Issuer string `json:"issuer"`
	// Audiences: the token's "aud" must contain one of them.
	// +required
	Audiences []string `json:"audiences"`
	// JWKSURL is where the provider publishes its public keys (https, or http on loopback).
	// +optional
	JWKSURL string `json:"jwksURL,omitempty"`
	// HMACSecretFile holds a shared secret for HS256/384/512 tokens, for providers without
	// public keys. It cannot be combined with jwksURL or discovery: HMAC is never accepted when
	// public keys are configured.
	// +optional
	HMACSecretFile string `json:"hmacSecretFile,omitempty"`
	// Algorithms allowed. Defaults to RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384,
	// ES512 and EdDSA with public keys; HS256, HS384, HS512 with a shared secret. "none" is never
	// allowed.
	// +optional
	Algorithms []string `json:"algorithms,omitempty"`
	// ClockSkew tolerated on exp, nbf and iat. Defaults to 30s; at most 5m.
	// +optional
	ClockSkew *metav1.Duration `json:"clockSkew,omitempty"`
	// SubjectClaim names the claim holding the subject. Defaults to "sub".
	// +optional
	SubjectClaim string `json:"subjectClaim,omitempty"`
	// TenantClaim names the claim holding the tenant. Defaults to "tenant". When the claim is
	// absent, Tenant applies; when both are absent the token is refused.
	// +optional
	TenantClaim string `json:"tenantClaim,omitempty"`
	// Tenant is the tenant of tokens that carry no tenant claim.
	// +optional
	Tenant string `json:"tenant,omitempty"`
	// GroupsClaim names the claim holding groups, a string or a list of strings. Defaults to
	// "groups".
	// +optional
	GroupsClaim string `json:"groupsClaim,omitempty"`
	// FetchTimeout bounds one fetch of the key set or discovery document. Defaults to 5s.
	// +optional
	FetchTimeout *metav1.Duration `json:"fetchTimeout,omitempty"`
	// RefreshInterval is how long fetched keys are used before they are fetched again. An unknown
	// key id triggers an earlier fetch, at most once per minRefreshInterval. Defaults to 1h.
	// +optional
	RefreshInterval *metav1.Duration `json:"refreshInterval,omitempty"`
	// MinRefreshInterval bounds how often tokens with unknown key ids can make the gateway fetch
	// the key set. Defaults to 30s.
	// +optional
	MinRefreshInterval *metav1.Duration `json:"minRefreshInterval,omitempty"`
}

// Where mTLS takes the subject name from.
const (
	SubjectFromCommonName = "CommonName"
	SubjectFromURISAN     = "URISAN"
)

// MTLS configures client certificates as credentials.
type MTLS struct {
	// SubjectFrom is CommonName (default) or URISAN (the first URI subject alternative name, such
	// as a SPIFFE id).
	// +optional
	SubjectFrom string `json:"subjectFrom,omitempty"`
	// Tenants map subjects to tenants and groups; the first entry whose match fits applies. A
	// certificate no entry matches is refused unless defaultTenant is set.
	// +optional
	Tenants []TenantMapping `json:"tenants,omitempty"`
	// DefaultTenant applies when no entry of tenants matches.
	// +optional
	DefaultTenant string `json:"defaultTenant,omitempty"`
}

// TenantMapping maps certificate subjects to a tenant.
type TenantMapping struct {
	// Match is a subject or a glob where "*" matches any run of characters, such as
	// "spiffe://hospital-a/*".
	// +required
	Match string `json:"match"`
	// Tenant of the matching subjects.
	// +required
	Tenant string `json:"tenant"`
	// Groups of the matching subjects.
	// +optional
	Groups []string `json:"groups,omitempty"`
}

// Priority is a task's scheduling class.
type Priority string

// Priorities, highest first.
const (
	PriorityUrgent Priority = "urgent"
	PriorityNormal Priority = "normal"
	PriorityBatch  Priority = "batch"
)

// Policy allows subjects to call agents. Policies only ever allow; a request is allowed when at
// least one policy allows it.
type Policy struct {
	// Name identifies the policy in errors and logs.
	// +required
	Name string `json:"name"`
	// Subjects the policy applies to: names or globs ("*" matches any run of characters), such as
	// "alice", "agent:triage" or "agent:*".
	// +optional
	Subjects []string `json:"subjects,omitempty"`
	// Groups the policy applies to: a subject in any of them is covered.
	// +optional
	Groups []string `json:"groups,omitempty"`
	// Tenants, when set, restrict the policy to subjects of these tenants.
	// +optional
	Tenants []string `json:"tenants,omitempty"`
	// Agents the subjects may call: names or globs.
	// +required
	Agents []string `json:"agents"`
	// Skills, when set, restrict calls to these skills (names or globs); a request that names no
	// skill is then allowed only if a pattern is "*".
	// +optional
	Skills []string `json:"skills,omitempty"`
	// MaxPriority is the highest priority the subjects may ask for: urgent, normal (default) or
	// batch.
	// +optional
	MaxPriority Priority `json:"maxPriority,omitempty"`
	// TenantAdmin lets the subjects see and cancel every task of their own tenant, not only their
	// own tasks.
	// +optional
	TenantAdmin bool `json:"tenantAdmin,omitempty"`
}

// Limits bound what one caller can make the gateway hold or wait for.
type Limits struct {
	// MaxBodyBytes bounds a request body. Defaults to 8 MiB.
	// +optional
	MaxBodyBytes int64 `json:"maxBodyBytes,omitempty"`
	// MaxHeaderBytes bounds the request line and headers. Defaults to 64 KiB.
	// +optional
	MaxHeaderBytes int32 `json:"maxHeaderBytes,omitempty"`
	// MaxJSONDepth bounds the nesting of a request body. Defaults to 64.
	// +optional
	MaxJSONDepth int32 `json:"maxJSONDepth,omitempty"`
	// MaxSSELineBytes bounds one line of an agent's event stream. Defaults to 4 MiB.
	// +optional
	MaxSSELineBytes int32 `json:"maxSSELineBytes,omitempty"`
	// MaxConcurrentStreamsPerConnection bounds HTTP/2 streams per connection. Defaults to 100.
	// +optional
	MaxConcurrentStreamsPerConnection int32 `json:"maxConcurrentStreamsPerConnection,omitempty"`
	// MaxConcurrentRequests bounds requests in flight across all connections; more are refused
	// with 503. Defaults to 10000.
	// +optional
	MaxConcurrentRequests int32 `json:"maxConcurrentRequests,omitempty"`
	// ReadHeaderTimeout bounds reading the request headers. Defaults to 10s.
	// +optional
	ReadHeaderTimeout *metav1.Duration `json:"readHeaderTimeout,omitempty"`
	// ReadTimeout bounds reading the whole request. Defaults to 60s.
	// +optional
	ReadTimeout *metav1.Duration `json:"readTimeout,omitempty"`
	// WriteTimeout bounds writing the response; 0 (default) leaves it to the task timeout,
	// since event streams last as long as their task.
	// +optional
	WriteTimeout *metav1.Duration `json:"writeTimeout,omitempty"`
	// IdleTimeout closes keep-alive connections idle this long. Defaults to 120s.
	// +optional
	IdleTimeout *metav1.Duration `json:"idleTimeout,omitempty"`
}

// RateLimit is one rate-limit rule. It applies to each subject × agent pair separately: two
// subjects matching one rule each get their own budget.
type RateLimit struct {
	// Name identifies the rule in errors and logs.
	// +required
	Name string `json:"name"`
	// Subjects (names or globs) the rule applies to; with neither subjects nor groups it applies to
	// every subject.
	// +optional
	Subjects []string `json:"subjects,omitempty"`
	// Groups the rule applies to.
	// +optional
	Groups []string `json:"groups,omitempty"`
	// Agents (names or globs) the rule applies to; empty means every agent.
	// +optional
	Agents []string `json:"agents,omitempty"`
	// RequestsPerSecond is the sustained request rate; 0 leaves requests unlimited.
	// +optional
	RequestsPerSecond float64 `json:"requestsPerSecond,omitempty"`
	// Burst is how many requests may come at once. Defaults to max(1, ceil(requestsPerSecond)).
	// +optional
	Burst int32 `json:"burst,omitempty"`
	// TokensPerMinute is the sustained rate of model tokens agents report for the pair; 0 leaves
	// tokens unlimited. Tokens are charged after a task reports them; while the budget is in
	// debt, new requests are refused until it refills.
	// +optional
	TokensPerMinute int64 `json:"tokensPerMinute,omitempty"`
	// TokenBurst is the token budget when full. Defaults to tokensPerMinute.
	// +optional
	TokenBurst int64 `json:"tokenBurst,omitempty"`
}

// Fsync policies of the audit log.
const (
	// FsyncAlways makes every Write wait until its record is on stable storage (concurrent
	// writes share one fsync).
	FsyncAlways = "always"
	// FsyncInterval writes each record to the operating system at once and fsyncs at most every
	// fsyncInterval; a power loss can lose the records of the last interval.
	FsyncInterval = "interval"
	// FsyncNever leaves flushing to the operating system.
	FsyncNever = "never"
)

// Audit configures the audit log: hash-chained JSON Lines, one record per call, never message
// content.
type Audit struct {
	// Path of the log. Files are named after it with the sequence number of their first record,
	// such as audit-0000000000000001.jsonl for path audit.jsonl. Defaults to audit/audit.jsonl
	// under the gateway's data directory.
	// +optional
	Path string `json:"path,omitempty"`
	// MaxFileBytes starts a new file when the current one would grow past it. Defaults to 100 MiB.
	// +optional
	MaxFileBytes int64 `json:"maxFileBytes,omitempty"`
	// Fsync is always (default), interval or never.
	// +optional
	Fsync string `json:"fsync,omitempty"`
	// FsyncInterval is the longest a written record waits for fsync with fsync: interval.
	// Defaults to 1s.
	// +optional
	FsyncInterval *metav1.Duration `json:"fsyncInterval,omitempty"`
	// HMACKeyFile holds a secret key (at least 32 bytes) that keys the hash chain, so that someone
	// who can edit the log but not read the key cannot recompute the chain. Keep it away from the
	// log's host or at least its file permissions.
	// +optional
	HMACKeyFile string `json:"hmacKeyFile,omitempty"`
	// HMACKeyEnv is an environment variable holding the key, instead of HMACKeyFile.
	// +optional
	HMACKeyEnv string `json:"hmacKeyEnv,omitempty"`
	// Checkpoints, when set, has the gateway write signed checkpoints of the chain's head to a
	// second file, so that records cut off the end of the log, or its newest files deleted, are
	// noticed by agentplane audit verify --checkpoints.
	// +optional
	Checkpoints *AuditCheckpoints `json:"checkpoints,omitempty"`
}

// AuditCheckpoints configures the audit log's checkpoints: one JSON line per checkpoint (seq and
// hash of the last record, its file, the time), signed with HMAC-SHA-256, appended and fsynced.
type AuditCheckpoints struct {
	// Path of the checkpoints file. It must not be in the log's directory: keep it where whoever
	// can change the log cannot (another disk or host's mount, an append-only file).
	// +required
	Path string `json:"path"`
	// Interval between checkpoints, from 1s to 1h; one is also taken on a clean shutdown.
	// Defaults to 1m. Records written after the newest checkpoint are not covered.
	// +optional
	Interval *metav1.Duration `json:"interval,omitempty"`
	// KeyFile holds the HMAC key (at least 32 bytes) that signs checkpoints. Defaults to the log's
	// own key (hmacKeyFile or hmacKeyEnv); required when the log has none.
	// +optional
	KeyFile string `json:"keyFile,omitempty"`
}

// Built-in redaction patterns.
const (
	PatternSSN   = "ssn"
	PatternMRN   = "mrn"
	PatternPhone = "phone"
	PatternEmail = "email"
)

// Redaction configures masking of patient identifiers.
type Redaction struct {
	// Disabled turns redaction off. It is on by default.
	// +optional
	Disabled bool `json:"disabled,omitempty"`
	// Patterns are the built-in patterns to apply: ssn, mrn, phone, email. Defaults to all four.
	// +optional
	Patterns []string `json:"patterns,omitempty"`
	// Custom patterns, applied after the built-in ones.
	// +optional
	Custom []CustomPattern `json:"custom,omitempty"`
}

// CustomPattern is a named regular expression (RE2 syntax; matching is linear in the input).
type CustomPattern struct {
	// Name appears in the replacement, "[REDACTED:<name>]".
	// +required
	Name string `json:"name"`
	// Regex to mask.
	// +required
	Regex string `json:"regex"`
}
