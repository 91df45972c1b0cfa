package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/a2a"
)

// fault is a RoundTripper that answers a replica's card and then fails the JSON-RPC request
// the way a broken replica does.
type fault func(req *http.Request) (*http.Response, error)

func (f fault) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodGet {
		return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Request: req,
			Body: io.NopCloser(strings.NewReader(`{"supportedInterfaces":[{"url":"/","protocolBinding":"JSONRPC","protocolVersion":"1.0"}]}`))}, nil
	}
	return f(req)
}

// resetAfter is a body that gives n bytes and then a connection reset.
type resetAfter struct{ n int }

func (r *resetAfter) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	}
	k := min(r.n, len(p))
	for i := range k {
		p[i] = '{'
	}
	r.n -= k
	return k, nil
}
func (r *resetAfter) Close() error { return nil }

func answer(req *http.Request, status int, body io.ReadCloser) *http.Response {
	return &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {"application/json"}}, Body: body, Request: req}
}

// TestFailuresAreTypedAtTheTransport: every way a replica can fail is classified once, by type,
// and retry safety and ejection follow from the type alone.
func TestFailuresAreTypedAtTheTransport(t *testing.T) {
	refused := fault(func(*http.Request) (*http.Response, error) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	})
	for _, tc := range []struct {
		name                         string
		rt                           http.RoundTripper
		result                       Result
		neverSent, retryable, ejects bool
		agentAnswered                bool // the request went through and an answer came back whole
	}{
		{"connection refused", refused, ResultRefused, true, true, true, false},
		{"reset mid-body", fault(func(r *http.Request) (*http.Response, error) {
			return answer(r, http.StatusOK, &resetAfter{n: 10}), nil
		}), ResultDropped, false, true, true, false},
		{"reset before any answer", fault(func(*http.Request) (*http.Response, error) {
			return nil, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
		}), ResultDropped, false, true, true, false},
		{"503", fault(func(r *http.Request) (*http.Response, error) {
			return answer(r, http.StatusServiceUnavailable, io.NopCloser(strings.NewReader("busy"))), nil
		}), ResultStatus, false, true, false, false},
		{"garbage", fault(func(r *http.Request) (*http.Response, error) {
			return answer(r, http.StatusOK, io.NopCloser(strings.NewReader("<html>oops"))), nil
		}), ResultOK, false, false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewClient(tc.rt, nil)
			resp, err := c.Send(t.Context(), "http://10.0.0.1:8080", a2a.V1, []byte(`{}`), false, http.Header{})
			if err == nil {
				_, err = ReadAnswer(resp)
			}
			if tc.agentAnswered != (err == nil) {
				t.Fatalf("err = %v", err)
			}
			if got := ResultOf(err); got != tc.result {
				t.Errorf("ResultOf(%v) = %s, want %s", err, got, tc.result)
			}
			if NeverSent(err) != tc.neverSent || Retryable(err) != tc.retryable || EjectNow(err) != tc.ejects {
				t.Errorf("%v: NeverSent %v Retryable %v EjectNow %v, want %v %v %v", err,
					NeverSent(err), Retryable(err), EjectNow(err), tc.neverSent, tc.retryable, tc.ejects)
			}
		})
	}
}

// A hung replica comes back as the caller's deadline, which the dispatcher names ErrHung; an
// unreadable card is a DialError: the task was never sent.
func TestHangAndCardFailures(t *testing.T) {
	hang := fault(func(r *http.Request) (*http.Response, error) { <-r.Context().Done(); return nil, r.Context().Err() })
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := NewClient(hang, nil).Send(ctx, "http://10.0.0.1:8080", a2a.V1, []byte(`{}`), false, http.Header{})
	if !errors.Is(err, context.DeadlineExceeded) || Retryable(err) {
		t.Fatalf("hang: %v (retryable %v); the dispatcher must see the deadline", err, Retryable(err))
	}
	if !Retryable(ErrHung) || EjectNow(ErrHung) || ResultOf(ErrHung) != ResultHung {
		t.Fatal("ErrHung is retried, not ejected at once, and reported as hung")
	}

	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	_, err = NewClient(nil, nil).Send(t.Context(), srv.URL, a2a.V1, []byte(`{}`), false, http.Header{})
	if !NeverSent(err) || !EjectNow(err) {
		t.Fatalf("no card: %v", err)
	}
	_, err = NewClient(nil, nil).Send(t.Context(), "http://"+closedPort(t), a2a.V1, []byte(`{}`), false, http.Header{})
	if !NeverSent(err) {
		t.Fatalf("closed port: %v", err)
	}
}

// closedPort is an address that was listened on and closed: a dead replica.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
