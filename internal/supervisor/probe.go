package supervisor

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// prober runs HTTP probes against replicas. Connections are not kept alive: a replica may be
// replaced at any moment, and no connection may outlive the supervisor.
type prober struct {
	client    *http.Client
	transport *http.Transport
}

func newProber() *prober {
	t := &http.Transport{
		Proxy:             nil, // probes go to the local replica, never through a proxy
		DisableKeepAlives: true,
		DialContext:       (&net.Dialer{}).DialContext,
	}
	return &prober{
		transport: t,
		client: &http.Client{
			Transport: t,
			// A redirect is an answer: 3xx counts as success, as for Kubernetes' httpGet.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// probe sends GET url and returns nil for a 2xx or 3xx answer within timeout.
func (p *prober) probe(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "agentplane-supervisor")
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("probe answered %s", resp.Status)
	}
	return nil
}

// freePort asks the kernel for a free TCP port on host. Another process may take it before the
// replica binds it; the replica then fails its startup and is restarted on another port.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(port)
}
