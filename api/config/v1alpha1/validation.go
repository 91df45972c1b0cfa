package v1alpha1

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// AgentSubjectPrefix starts the subject name of an agent's replicas calling the gateway. Only
// keys configured with apiKeys[].agent (or issued to replicas at run time) carry it.
const AgentSubjectPrefix = "agent:"

// MaxClockSkew bounds auth.jwt.clockSkew.
const MaxClockSkew = 5 * time.Minute

// MinAuditFileBytes bounds audit.maxFileBytes from below, so that a file holds many records.
const MinAuditFileBytes = 64 << 10

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Validate checks a defaulted GatewayConfig and returns every problem, each naming its field.
func (c *GatewayConfig) Validate() field.ErrorList {
	var errs field.ErrorList
	if c.APIVersion != APIVersion {
		errs = append(errs, field.Invalid(field.NewPath("apiVersion"), c.APIVersion, "must be "+APIVersion))
	}
	if c.Kind != KindGatewayConfig {
		errs = append(errs, field.Invalid(field.NewPath("kind"), c.Kind, "must be "+KindGatewayConfig))
	}
	errs = append(errs, validateListeners(c.Listeners, field.NewPath("listeners"))...)
	errs = append(errs, c.Auth.validate(c.Listeners, field.NewPath("auth"))...)
	errs = append(errs, validatePolicies(c.Policies, field.NewPath("policies"))...)
	errs = append(errs, c.Limits.validate(field.NewPath("limits"))...)
	errs = append(errs, validateRateLimits(c.RateLimits, field.NewPath("rateLimits"))...)
	errs = append(errs, c.Audit.validate(field.NewPath("audit"))...)
	errs = append(errs, c.Redaction.validate(field.NewPath("redaction"))...)
	errs = append(errs, c.AgentHosts.validate(field.NewPath("agentHosts"))...)
	errs = append(errs, c.PushNotifications.validate(field.NewPath("pushNotifications"))...)
	return errs
}

func (h *AgentHosts) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if h.Domain != "" {
		for _, msg := range validation.IsDNS1123Subdomain(h.Domain) {
			errs = append(errs, field.Invalid(p.Child("domain"), h.Domain, msg))
		}
	}
	for host, agent := range h.Hosts {
		hp := p.Child("hosts").Key(host)
		for _, msg := range validation.IsDNS1123Subdomain(host) {
			errs = append(errs, field.Invalid(hp, host, "host name: "+msg))
		}
		for _, msg := range validation.IsDNS1123Label(agent) {
			errs = append(errs, field.Invalid(hp, agent, "agent name: "+msg))
		}
	}
	return errs
}

func validateListeners(ls []Listener, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := map[string]bool{}
	addrs := map[string]bool{}
	for i, l := range ls {
		lp := p.Index(i)
		if names[l.Name] {
			errs = append(errs, field.Duplicate(lp.Child("name"), l.Name))
		}
		names[l.Name] = true
		host, port, err := net.SplitHostPort(l.Address)
		switch {
		case l.Address == "":
			errs = append(errs, field.Required(lp.Child("address"), "host:port to listen on"))
		case err != nil:
			errs = append(errs, field.Invalid(lp.Child("address"), l.Address, "must be host:port"))
		default:
			if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
				errs = append(errs, field.Invalid(lp.Child("address"), l.Address, "port must be a number from 0 to 65535"))
			}
			if addrs[l.Address] {
				errs = append(errs, field.Duplicate(lp.Child("address"), l.Address))
			}
			addrs[l.Address] = true
			if l.TLS == nil && !l.AllowPlaintext && !isLoopback(host) {
				errs = append(errs, field.Required(lp.Child("tls"),
					"a listener on a non-loopback address must serve TLS (or set allowPlaintext when TLS ends in front of the gateway)"))
			}
		}
		if t := l.TLS; t != nil {
			tp := lp.Child("tls")
			if t.CertFile == "" {
				errs = append(errs, field.Required(tp.Child("certFile"), ""))
			}
			if t.KeyFile == "" {
				errs = append(errs, field.Required(tp.Child("keyFile"), ""))
			}
			if t.ClientAuth != "" {
				if t.ClientCAFile == "" {
					errs = append(errs, field.Required(tp.Child("clientCAFile"), "clientAuth needs the CA that client certificates chain to"))
				}
				if t.ClientAuth != ClientAuthVerifyIfGiven && t.ClientAuth != ClientAuthRequire {
					errs = append(errs, field.NotSupported(tp.Child("clientAuth"), t.ClientAuth, []string{ClientAuthVerifyIfGiven, ClientAuthRequire}))
				}
			}
			if t.MinVersion != TLS12 && t.MinVersion != TLS13 {
				errs = append(errs, field.NotSupported(tp.Child("minVersion"), t.MinVersion, []string{TLS12, TLS13}))
			}
		}
	}
	return errs
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (a *Auth) validate(ls []Listener, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	hashes := map[string]bool{}
	for i, k := range a.APIKeys {
		kp := p.Child("apiKeys").Index(i)
		switch {
		case k.Subject == "" && k.Agent == "":
			errs = append(errs, field.Required(kp.Child("subject"), "set subject, or agent for a replica's key"))
		case k.Subject != "" && k.Agent != "":
			errs = append(errs, field.Forbidden(kp.Child("agent"), "set subject or agent, not both"))
		case k.Agent != "":
			for _, msg := range validation.IsDNS1035Label(k.Agent) {
				errs = append(errs, field.Invalid(kp.Child("agent"), k.Agent, msg))
			}
		default:
			errs = append(errs, validateName(kp.Child("subject"), k.Subject)...)
			if strings.HasPrefix(k.Subject, AgentSubjectPrefix) {
				errs = append(errs, field.Invalid(kp.Child("subject"), k.Subject, `names starting with "agent:" are reserved; use agent instead`))
			}
		}
		if k.Tenant != "" {
			errs = append(errs, validateName(kp.Child("tenant"), k.Tenant)...)
		}
		for j, g := range k.Groups {
			errs = append(errs, validateName(kp.Child("groups").Index(j), g)...)
		}
		set := 0
		for _, v := range []string{k.SHA256, k.KeyFile, k.KeyEnv} {
			if v != "" {
				set++
			}
		}
		if set != 1 {
			errs = append(errs, field.Invalid(kp, "", "set exactly one of sha256, keyFile and keyEnv"))
		}
		if k.SHA256 != "" {
			if !sha256Hex.MatchString(k.SHA256) {
				errs = append(errs, field.Invalid(kp.Child("sha256"), "(hidden)", "must be 64 lowercase hex digits, the SHA-256 of the key"))
			} else if hashes[k.SHA256] {
				errs = append(errs, field.Duplicate(kp.Child("sha256"), "(hidden)"))
			}
			hashes[k.SHA256] = true
		}
		if k.KeyEnv != "" {
			for _, msg := range validation.IsEnvVarName(k.KeyEnv) {
				errs = append(errs, field.Invalid(kp.Child("keyEnv"), k.KeyEnv, msg))
			}
		}
	}
	if j := a.JWT; j != nil {
		errs = append(errs, j.validate(p.Child("jwt"))...)
	}
	if m := a.MTLS; m != nil {
		mp := p.Child("mtls")
		if !slices.ContainsFunc(ls, func(l Listener) bool { return l.TLS != nil && l.TLS.ClientCAFile != "" }) {
			errs = append(errs, field.Invalid(mp, "", "no listener has tls.clientCAFile, so no client certificate could be verified"))
		}
		if m.SubjectFrom != SubjectFromCommonName && m.SubjectFrom != SubjectFromURISAN {
			errs = append(errs, field.NotSupported(mp.Child("subjectFrom"), m.SubjectFrom, []string{SubjectFromCommonName, SubjectFromURISAN}))
		}
		for i, t := range m.Tenants {
			tp := mp.Child("tenants").Index(i)
			if t.Match == "" {
				errs = append(errs, field.Required(tp.Child("match"), ""))
			}
			if t.Tenant == "" {
				errs = append(errs, field.Required(tp.Child("tenant"), ""))
			} else {
				errs = append(errs, validateName(tp.Child("tenant"), t.Tenant)...)
			}
			for j, g := range t.Groups {
				errs = append(errs, validateName(tp.Child("groups").Index(j), g)...)
			}
		}
		if m.DefaultTenant != "" {
			errs = append(errs, validateName(mp.Child("defaultTenant"), m.DefaultTenant)...)
		}
	}
	return errs
}

var knownAlgorithms = append(append([]string(nil), PublicKeyAlgorithms...), HMACAlgorithms...)

func (j *JWT) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if j.Issuer == "" {
		errs = append(errs, field.Required(p.Child("issuer"), "the token issuer, matched against \"iss\""))
	} else if j.JWKSURL == "" && j.HMACSecretFile == "" {
		if msg := secureURL(j.Issuer); msg != "" {
			errs = append(errs, field.Invalid(p.Child("issuer"), j.Issuer, msg+" (it is used for OpenID Connect discovery)"))
		}
	}
	if len(j.Audiences) == 0 {
		errs = append(errs, field.Required(p.Child("audiences"), "tokens must be meant for this gateway"))
	}
	for i, a := range j.Audiences {
		if a == "" {
			errs = append(errs, field.Required(p.Child("audiences").Index(i), ""))
		}
	}
	if j.JWKSURL != "" {
		if msg := secureURL(j.JWKSURL); msg != "" {
			errs = append(errs, field.Invalid(p.Child("jwksURL"), j.JWKSURL, msg))
		}
		if j.HMACSecretFile != "" {
			errs = append(errs, field.Forbidden(p.Child("hmacSecretFile"), "HMAC is never accepted when public keys are configured; drop jwksURL or the secret"))
		}
	}
	for i, alg := range j.Algorithms {
		ap := p.Child("algorithms").Index(i)
		switch {
		case strings.EqualFold(alg, "none"):
			errs = append(errs, field.Forbidden(ap, `unsigned tokens ("none") are never accepted`))
		case !slices.Contains(knownAlgorithms, alg):
			errs = append(errs, field.NotSupported(ap, alg, knownAlgorithms))
		case j.HMACSecretFile == "" && slices.Contains(HMACAlgorithms, alg):
			errs = append(errs, field.Forbidden(ap, alg+" needs hmacSecretFile; with public keys HMAC would let anyone holding the public key sign tokens"))
		case j.HMACSecretFile != "" && !slices.Contains(HMACAlgorithms, alg):
			errs = append(errs, field.Forbidden(ap, alg+" needs public keys (jwksURL or discovery), not hmacSecretFile"))
		}
	}
	errs = append(errs, durationIn(p.Child("clockSkew"), j.ClockSkew, 0, MaxClockSkew)...)
	errs = append(errs, durationIn(p.Child("fetchTimeout"), j.FetchTimeout, 100*time.Millisecond, time.Minute)...)
	errs = append(errs, durationIn(p.Child("refreshInterval"), j.RefreshInterval, time.Minute, 7*24*time.Hour)...)
	errs = append(errs, durationIn(p.Child("minRefreshInterval"), j.MinRefreshInterval, time.Second, time.Hour)...)
	for _, c := range []struct{ name, v string }{{"subjectClaim", j.SubjectClaim}, {"tenantClaim", j.TenantClaim}, {"groupsClaim", j.GroupsClaim}} {
		if c.v == "" {
			errs = append(errs, field.Required(p.Child(c.name), ""))
		}
	}
	if j.Tenant != "" {
		errs = append(errs, validateName(p.Child("tenant"), j.Tenant)...)
	}
	return errs
}

// secureURL returns why u is not an https URL (or http on loopback), or "".
func secureURL(u string) string {
	pu, err := url.Parse(u)
	if err != nil || pu.Host == "" {
		return "must be an absolute URL"
	}
	switch {
	case pu.Scheme == "https":
		return ""
	case pu.Scheme == "http" && isLoopback(pu.Hostname()):
		return ""
	}
	return "must be https (http only on loopback)"
}

func durationIn(p *field.Path, d *metav1.Duration, lo, hi time.Duration) field.ErrorList {
	if d == nil {
		return nil
	}
	if d.Duration < lo || d.Duration > hi {
		return field.ErrorList{field.Invalid(p, d.Duration.String(), fmt.Sprintf("must be between %v and %v", lo, hi))}
	}
	return nil
}

// validateName checks a subject, tenant or group name: non-empty, at most 256 bytes, printable.
func validateName(p *field.Path, s string) field.ErrorList {
	switch {
	case s == "":
		return field.ErrorList{field.Required(p, "")}
	case len(s) > 256:
		return field.ErrorList{field.TooLong(p, "", 256)}
	case strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }):
		return field.ErrorList{field.Invalid(p, s, "must not contain spaces or control characters")}
	}
	return nil
}

func validatePatterns(p *field.Path, pats []string) field.ErrorList {
	var errs field.ErrorList
	for i, s := range pats {
		errs = append(errs, validateName(p.Index(i), s)...)
	}
	return errs
}

var priorities = []string{string(PriorityUrgent), string(PriorityNormal), string(PriorityBatch)}

func validatePolicies(ps []Policy, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := map[string]bool{}
	for i, pol := range ps {
		pp := p.Index(i)
		if pol.Name == "" {
			errs = append(errs, field.Required(pp.Child("name"), ""))
		} else if names[pol.Name] {
			errs = append(errs, field.Duplicate(pp.Child("name"), pol.Name))
		}
		names[pol.Name] = true
		if len(pol.Subjects) == 0 && len(pol.Groups) == 0 {
			errs = append(errs, field.Required(pp.Child("subjects"), `set subjects or groups; use subjects: ["*"] for every authenticated caller`))
		}
		if len(pol.Agents) == 0 {
			errs = append(errs, field.Required(pp.Child("agents"), `name the agents allowed, or ["*"]`))
		}
		errs = append(errs, validatePatterns(pp.Child("subjects"), pol.Subjects)...)
		errs = append(errs, validatePatterns(pp.Child("groups"), pol.Groups)...)
		errs = append(errs, validatePatterns(pp.Child("tenants"), pol.Tenants)...)
		errs = append(errs, validatePatterns(pp.Child("agents"), pol.Agents)...)
		errs = append(errs, validatePatterns(pp.Child("skills"), pol.Skills)...)
		if !slices.Contains(priorities, string(pol.MaxPriority)) {
			errs = append(errs, field.NotSupported(pp.Child("maxPriority"), pol.MaxPriority, priorities))
		}
	}
	return errs
}

func (l *Limits) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	between := func(name string, v, lo, hi int64) {
		if v < lo || v > hi {
			errs = append(errs, field.Invalid(p.Child(name), v, fmt.Sprintf("must be between %d and %d", lo, hi)))
		}
	}
	between("maxBodyBytes", l.MaxBodyBytes, 1<<10, 1<<30)
	between("maxHeaderBytes", int64(l.MaxHeaderBytes), 4<<10, 1<<20)
	between("maxJSONDepth", int64(l.MaxJSONDepth), 8, 1000)
	between("maxSSELineBytes", int64(l.MaxSSELineBytes), 4<<10, 64<<20)
	between("maxConcurrentStreamsPerConnection", int64(l.MaxConcurrentStreamsPerConnection), 1, 10000)
	between("maxConcurrentRequests", int64(l.MaxConcurrentRequests), 1, 1_000_000)
	errs = append(errs, durationIn(p.Child("readHeaderTimeout"), l.ReadHeaderTimeout, time.Second, 10*time.Minute)...)
	errs = append(errs, durationIn(p.Child("readTimeout"), l.ReadTimeout, time.Second, time.Hour)...)
	errs = append(errs, durationIn(p.Child("writeTimeout"), l.WriteTimeout, 0, 24*time.Hour)...)
	errs = append(errs, durationIn(p.Child("idleTimeout"), l.IdleTimeout, time.Second, time.Hour)...)
	return errs
}

func validateRateLimits(rs []RateLimit, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := map[string]bool{}
	for i, r := range rs {
		rp := p.Index(i)
		if r.Name == "" {
			errs = append(errs, field.Required(rp.Child("name"), ""))
		} else if names[r.Name] {
			errs = append(errs, field.Duplicate(rp.Child("name"), r.Name))
		}
		names[r.Name] = true
		errs = append(errs, validatePatterns(rp.Child("subjects"), r.Subjects)...)
		errs = append(errs, validatePatterns(rp.Child("groups"), r.Groups)...)
		errs = append(errs, validatePatterns(rp.Child("agents"), r.Agents)...)
		if r.RequestsPerSecond < 0 || r.RequestsPerSecond > 1e6 || math.IsNaN(r.RequestsPerSecond) {
			errs = append(errs, field.Invalid(rp.Child("requestsPerSecond"), r.RequestsPerSecond, "must be between 0 and 1000000"))
		}
		if r.Burst < 0 || (r.RequestsPerSecond > 0 && r.Burst < 1) {
			errs = append(errs, field.Invalid(rp.Child("burst"), r.Burst, "must be at least 1"))
		}
		if r.TokensPerMinute < 0 {
			errs = append(errs, field.Invalid(rp.Child("tokensPerMinute"), r.TokensPerMinute, "must not be negative"))
		}
		if r.TokenBurst < 0 || r.TokenBurst > math.MaxInt32 || (r.TokensPerMinute > 0 && r.TokenBurst < 1) {
			errs = append(errs, field.Invalid(rp.Child("tokenBurst"), r.TokenBurst, fmt.Sprintf("must be between 1 and %d", math.MaxInt32)))
		}
	}
	return errs
}

var fsyncPolicies = []string{FsyncAlways, FsyncInterval, FsyncNever}

func (a *Audit) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if a.MaxFileBytes < MinAuditFileBytes {
		errs = append(errs, field.Invalid(p.Child("maxFileBytes"), a.MaxFileBytes, fmt.Sprintf("must be at least %d", MinAuditFileBytes)))
	}
	if !slices.Contains(fsyncPolicies, a.Fsync) {
		errs = append(errs, field.NotSupported(p.Child("fsync"), a.Fsync, fsyncPolicies))
	}
	if a.FsyncInterval != nil && a.Fsync != FsyncInterval {
		errs = append(errs, field.Forbidden(p.Child("fsyncInterval"), "only with fsync: interval"))
	}
	errs = append(errs, durationIn(p.Child("fsyncInterval"), a.FsyncInterval, time.Millisecond, time.Minute)...)
	if a.HMACKeyFile != "" && a.HMACKeyEnv != "" {
		errs = append(errs, field.Forbidden(p.Child("hmacKeyEnv"), "set hmacKeyFile or hmacKeyEnv, not both"))
	}
	if a.HMACKeyEnv != "" {
		for _, msg := range validation.IsEnvVarName(a.HMACKeyEnv) {
			errs = append(errs, field.Invalid(p.Child("hmacKeyEnv"), a.HMACKeyEnv, msg))
		}
	}
	if c := a.Checkpoints; c != nil {
		cp := p.Child("checkpoints")
		switch {
		case c.Path == "":
			errs = append(errs, field.Required(cp.Child("path"), "where to write checkpoints"))
		case a.Path != "" && filepath.Clean(filepath.Dir(c.Path)) == filepath.Clean(filepath.Dir(a.Path)):
			errs = append(errs, field.Invalid(cp.Child("path"), c.Path, "must not be in the audit log's directory: whoever can cut the log could cut the checkpoints too"))
		}
		errs = append(errs, durationIn(cp.Child("interval"), c.Interval, time.Second, time.Hour)...)
		if c.KeyFile == "" && a.HMACKeyFile == "" && a.HMACKeyEnv == "" {
			errs = append(errs, field.Required(cp.Child("keyFile"), "checkpoints are signed with the audit log's HMAC key, and it has none"))
		}
	}
	return errs
}

var customName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

func (r *Redaction) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	seen := map[string]bool{}
	for i, name := range r.Patterns {
		pp := p.Child("patterns").Index(i)
		if !slices.Contains(BuiltinPatterns, name) {
			errs = append(errs, field.NotSupported(pp, name, BuiltinPatterns))
		} else if seen[name] {
			errs = append(errs, field.Duplicate(pp, name))
		}
		seen[name] = true
	}
	for i, c := range r.Custom {
		cp := p.Child("custom").Index(i)
		if !customName.MatchString(c.Name) {
			errs = append(errs, field.Invalid(cp.Child("name"), c.Name, "must be lowercase letters, digits and '-', at most 63"))
		} else if seen[c.Name] {
			errs = append(errs, field.Duplicate(cp.Child("name"), c.Name))
		}
		seen[c.Name] = true
		re, err := regexp.Compile(c.Regex)
		switch {
		case c.Regex == "":
			errs = append(errs, field.Required(cp.Child("regex"), ""))
		case err != nil:
			errs = append(errs, field.Invalid(cp.Child("regex"), c.Regex, err.Error()))
		case re.MatchString(""):
			errs = append(errs, field.Invalid(cp.Child("regex"), c.Regex, "must not match the empty string"))
		}
	}
	return errs
}

func (pn *PushNotifications) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, n := range pn.AllowedNetworks {
		if _, err := netip.ParsePrefix(n); err != nil {
			errs = append(errs, field.Invalid(p.Child("allowedNetworks").Index(i), n, "must be a CIDR prefix such as 10.0.0.0/8 or 127.0.0.1/32"))
		}
	}
	errs = append(errs, durationIn(p.Child("timeout"), pn.Timeout, 100*time.Millisecond, 5*time.Minute)...)
	errs = append(errs, durationIn(p.Child("giveUpAfter"), pn.GiveUpAfter, time.Second, 7*24*time.Hour)...)
	return errs
}
