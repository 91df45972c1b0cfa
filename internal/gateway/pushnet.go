package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"
)

// errWebhookRefused means a webhook URL, or the address it resolved to, may not be called:
// server-side request forgery protection. Match with errors.Is.
var errWebhookRefused = errors.New("push notification webhook refused")

// blockedNetworks are the address ranges a webhook may not reach unless the operator allows
// them (GatewayConfig pushNotifications.allowedNetworks): the gateway's own host, its private
// networks, the cloud metadata service, and addresses that are no single host.
var blockedNetworks = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("fc00::/7"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"}, // 169.254.169.254: cloud metadata
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast"},
}

// webhookPolicy decides which webhooks push notifications may call.
type webhookPolicy struct {
	allowed []netip.Prefix // blocked ranges the operator allows
}

// checkAddr refuses an address in a blocked range that no allowed prefix contains.
func (p webhookPolicy) checkAddr(a netip.Addr) error {
	a = a.Unmap().WithZone("")
	for _, n := range p.allowed {
		if n.Contains(a) {
			return nil
		}
	}
	for _, b := range blockedNetworks {
		if b.prefix.Contains(a) {
			return fmt.Errorf("%w: %s is a %s address (an operator may allow it in pushNotifications.allowedNetworks)", errWebhookRefused, a, b.what)
		}
	}
	return nil
}

// resolveTimeout bounds the lookup of a webhook's host name when a config is created.
const resolveTimeout = 2 * time.Second

// checkURL refuses a webhook URL that is not absolute http(s), carries credentials in it, or
// names (or resolves to) an address checkAddr refuses. A name that does not resolve now is
// accepted: each connection checks the address it dials.
func (p webhookPolicy) checkURL(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: not a URL", errWebhookRefused)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%w: the scheme must be http or https", errWebhookRefused)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("%w: the URL must be absolute, with a host", errWebhookRefused)
	case u.User != nil:
		return fmt.Errorf("%w: the URL must not carry a user or password; use the config's authentication", errWebhookRefused)
	}
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		return p.checkAddr(a)
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil // not resolvable now: each connection checks the address it dials
	}
	for _, a := range addrs {
		if err := p.checkAddr(a); err != nil {
			return fmt.Errorf("%s resolves to a refused address: %w", host, err)
		}
	}
	return nil
}

// client is the HTTP client of push notifications: every connection checks the address it
// dials (so a name that resolves to a refused address now, DNS rebinding, is refused too), no
// proxy from the environment (it would dial for us), no redirects (a 3xx is a failed delivery),
// and every request is bounded by timeout.
func (p webhookPolicy) client(timeout time.Duration) *http.Client {
	dialer := &net.Dialer{
		Timeout:   timeout,
		KeepAlive: 30 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: cannot read the dialed address %q", errWebhookRefused, address)
			}
			return p.checkAddr(ap.Addr())
		},
	}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           dialer.DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          100,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   timeout,
			ResponseHeaderTimeout: timeout,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
