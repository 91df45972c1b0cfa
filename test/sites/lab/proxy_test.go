package lab

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// echoServer answers every connection with what it reads, until the reader's end.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var conns sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		conns.Wait()
	})
	conns.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			})
		}
	})
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatalf("set deadline: %v", err)
	}
	return c.(*net.TCPConn)
}

func TestDelayAddsItsDelayEachWay(t *testing.T) {
	const delay = 20 * time.Millisecond
	p := Delay(t, "127.0.0.1:0", echoServer(t), delay)
	c := dial(t, p.Addr())
	reply := make([]byte, 1)
	for range 3 {
		start := time.Now()
		if _, err := c.Write([]byte{'x'}); err != nil {
			t.Fatalf("write: %v", err)
		}
		if _, err := io.ReadFull(c, reply); err != nil {
			t.Fatalf("read: %v", err)
		}
		if rtt := time.Since(start); rtt < 2*delay {
			t.Fatalf("RTT through a proxy of %v each way is %v, want at least %v", delay, rtt, 2*delay)
		}
	}
}

// A delay per chunk must not become a delay per chunk in a row: many chunks in flight arrive
// one delay later, in order, and the end of the stream is passed on after them.
func TestDelayKeepsOrderAndThroughput(t *testing.T) {
	const delay = 20 * time.Millisecond
	p := Delay(t, "127.0.0.1:0", echoServer(t), delay)
	c := dial(t, p.Addr())
	sent := make([]byte, 4<<20)
	_, _ = rand.Read(sent)

	start := time.Now()
	var writer sync.WaitGroup
	var writeErr error
	writer.Go(func() {
		if _, writeErr = c.Write(sent); writeErr == nil {
			writeErr = c.CloseWrite()
		}
	})
	got, err := io.ReadAll(c) // ends when the echo server's end comes back through the proxy
	writer.Wait()
	took := time.Since(start)
	if writeErr != nil || err != nil {
		t.Fatalf("echo of 4 MiB through the proxy: write: %v, read: %v", writeErr, err)
	}
	if !bytes.Equal(got, sent) {
		t.Fatalf("echo of 4 MiB through the proxy: got %d bytes that differ from what was sent", len(got))
	}
	// 4 MiB is at least 128 reads of 32 KiB each way: waiting out the delay for each in turn
	// would take over 5s.
	if took > 2*time.Second {
		t.Fatalf("echo of 4 MiB through a proxy of %v each way took %v: chunks wait in turn rather than together", delay, took)
	}
	t.Logf("4 MiB echoed through the proxy in %v", took)
}

func TestDelayClosesTheClientWhenTheTargetIsDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	dead := ln.Addr().String()
	ln.Close()
	p := Delay(t, "127.0.0.1:0", dead, time.Millisecond)
	c := dial(t, p.Addr())
	if n, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read through a proxy to a closed port: %d bytes, %v; want EOF", n, err)
	}
}

func TestDelayCloseEndsItsConnections(t *testing.T) {
	p := Delay(t, "127.0.0.1:0", echoServer(t), time.Millisecond)
	c := dial(t, p.Addr())
	if _, err := c.Write([]byte{'x'}); err != nil {
		t.Fatalf("write: %v", err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("read: %v", err)
	}
	p.Close() // returns only once every goroutine of the proxy has ended
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read after Close: %d bytes and no error, want the connection closed", n)
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Fatalf("dial after Close succeeded, want the listener closed")
	}
	p.Close()
}
