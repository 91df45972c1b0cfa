package upstream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/agentplane/agentplane/internal/a2a"
	"github.com/agentplane/agentplane/internal/fleet"
	"github.com/agentplane/agentplane/internal/telemetry"
)

// Limits and timeouts of the calls to replicas.
const (
	// DialTimeout bounds connecting to a replica.
	DialTimeout = 2 * time.Second
	// CardTimeout bounds reading a replica's card, a probe, or a short call such as GetTask.
	CardTimeout = 2 * time.Second
	// MaxAnswerBytes bounds a replica's non-streaming answer.
	MaxAnswerBytes = 64 << 20
)

// ForwardedHeaders are the request headers passed on to agents. Credentials are not: the gateway
// authenticates callers, agents trust the gateway.
var ForwardedHeaders = []string{"A2A-Version", "A2A-Extensions", "X-A2A-Extensions", "Traceparent", "Tracestate", "X-Request-Id"}

// Client sends requests to replicas.
type Client struct {
	http  *http.Client
	cards *Cards
}

// NewClient returns a Client over rt (NewTransport when nil); now is its clock for card ages.
func NewClient(rt http.RoundTripper, now func() time.Time) *Client {
	if rt == nil {
		rt = NewTransport()
	}
	if now == nil {
		now = time.Now
	}
	hc := &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &Client{http: hc, cards: &Cards{client: hc, now: now, entries: map[string]*Card{}}}
}

// Cards is the client's cache of replicas' agent cards.
func (c *Client) Cards() *Cards { return c.cards }

// NewTransport is the transport to replicas: no environment proxy, bounded dials (failures to
// connect come back as *DialError), no compression (event streams must not be buffered).
func NewTransport() *http.Transport {
	d := &net.Dialer{Timeout: DialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy: nil, // replicas are reached directly, never through an environment proxy
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, &DialError{Err: err}
			}
			return conn, nil
		},
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
}

// Send posts one JSON-RPC body to the replica at base, at the URL its card gives for dialect d,
// asking for an event stream when stream is set. Errors are typed (see the package doc); a 502,
// 503 or 504 answer is a *StatusError with its body discarded.
func (c *Client) Send(ctx context.Context, base string, d a2a.Dialect, body []byte, stream bool, in http.Header) (*http.Response, error) {
	target, err := c.cards.rpcURL(ctx, base, d)
	if err != nil {
		return nil, err
	}
	return c.post(ctx, target, body, stream, in, versionHeader(in, d))
}

// versionHeader is the A2A-Version header a request of dialect d carries, when the client's
// does not already name that dialect: an agent must read a request without it as A2A 0.3
// (the JavaScript SDK does), and queued or re-dispatched tasks have no client header at all.
func versionHeader(in http.Header, d a2a.Dialect) http.Header {
	v := in.Get("A2A-Version")
	if d == a2a.V03 && (v == "" || strings.HasPrefix(v, "0.3")) || d == a2a.V1 && strings.HasPrefix(v, "1.") {
		return nil
	}
	return http.Header{"A2A-Version": {string(d)}}
}

// SendPeer sends a JSON-RPC request to another gateway of the fleet at url (its A2A endpoint of
// the agent, which takes either dialect), with the signed fleet token that stands for the
// original caller. Errors are typed as for Send.
func (c *Client) SendPeer(ctx context.Context, url string, body []byte, stream bool, in http.Header, token string) (*http.Response, error) {
	return c.post(ctx, url, body, stream, in, http.Header{fleet.Header: {token}})
}

func (c *Client) post(ctx context.Context, target string, body []byte, stream bool, in, extra http.Header) (*http.Response, error) {
	up, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, &DialError{Err: err}
	}
	up.Header.Set("Content-Type", "application/json")
	if stream {
		up.Header.Set("Accept", "text/event-stream")
	} else {
		up.Header.Set("Accept", "application/json")
	}
	for _, h := range ForwardedHeaders {
		if v := in.Values(h); len(v) > 0 {
			up.Header[h] = v
		}
	}
	for k, v := range extra {
		up.Header[k] = v
	}
	telemetry.Inject(ctx, up.Header) // with tracing on, the agent's parent is this dispatch
	resp, err := c.http.Do(up)
	if err != nil {
		return nil, classify(err)
	}
	switch resp.StatusCode {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		return nil, &StatusError{Code: resp.StatusCode}
	}
	return resp, nil
}

// ReadAnswer reads a non-streaming answer of at most MaxAnswerBytes and closes the body. A read
// that breaks off is a *ResponseError.
func ReadAnswer(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerBytes+1))
	if err != nil {
		return nil, classify(err)
	}
	if len(out) > MaxAnswerBytes {
		return nil, fmt.Errorf("answer is larger than %d bytes", MaxAnswerBytes)
	}
	return out, nil
}

// Probe reports whether the replica at base serves its agent card.
func (c *Client) Probe(ctx context.Context, base string) bool {
	ctx, cancel := context.WithTimeout(ctx, CardTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+CardPath, nil)
	if err != nil {
		return false
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
