package lab

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// queueChunks bounds what a proxy holds back in one direction of one connection: when the
// receiving side does not keep up, reading from the sending side waits.
const queueChunks = 256

// chunkSize is the most a proxy reads at once.
const chunkSize = 32 << 10

// dialTimeout bounds a dial that has no earlier deadline: from a proxy to its target, and from
// a site.
const dialTimeout = 2 * time.Second

// Proxy is a TCP proxy that delays what it forwards by a fixed time in each direction, keeping
// the order of the bytes. Chunks are held in a queue with the time each is due, so a connection
// through it has the delay's latency but not a throughput limited by it.
type Proxy struct {
	ln     net.Listener
	target string
	delay  time.Duration

	ctx    context.Context // cancelled by Close; every goroutine ends with it
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{} // open on either side, closed by Close
}

// Delay starts a proxy listening on listenAddr (host:port; port 0 picks one, see Addr) that
// forwards each connection to target, delaying every chunk by d in each direction, so that an
// RTT through it is 2d more than without it. It runs in the test's own namespace: listen on the
// lab's HostIP so that sites reach it. The proxy closes when t ends.
func Delay(t testing.TB, listenAddr, target string, d time.Duration) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		t.Fatalf("delay proxy to %s: listen on %s: %v", target, listenAddr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{ln: ln, target: target, delay: d, ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(p.Close)
	return p
}

// Addr is the address the proxy listens on, host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Close stops the proxy: it stops listening, closes every connection through it, and returns
// once all its goroutines have ended. Closing twice is fine.
func (p *Proxy) Close() {
	p.cancel()
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// accept serves each connection until the listener closes.
func (p *Proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed; a listener on a local address has no other error worth retrying
		}
		if !p.track(client) {
			client.Close()
			return
		}
		p.wg.Go(func() { p.serve(client) })
	}
}

// track records an open connection so that Close closes it; it reports false once the proxy is
// closing, when the connection must be closed at once.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx.Err() != nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// serve dials the target for one client connection and forwards both ways until both
// directions have ended or one has failed.
func (p *Proxy) serve(client net.Conn) {
	defer p.untrack(client)
	d := net.Dialer{Timeout: dialTimeout}
	server, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		return // the client sees its connection closed, as when a real target refuses
	}
	if !p.track(server) {
		server.Close()
		return
	}
	defer p.untrack(server)

	// A failure in either direction ends both, as a reset would.
	ctx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	context.AfterFunc(ctx, func() {
		client.Close()
		server.Close()
	})
	var both sync.WaitGroup
	both.Go(func() { p.forward(ctx, cancel, client, server) })
	both.Go(func() { p.forward(ctx, cancel, server, client) })
	both.Wait()
}

// chunk is what one read got, and when it may be written on.
type chunk struct {
	data []byte
	due  time.Time
}

// forward copies src to dst, each chunk d later than it was read. At the end of src it ends
// dst's writing side once everything before has been written; on an error it cancels ctx,
// which closes both connections.
func (p *Proxy) forward(ctx context.Context, fail context.CancelFunc, src, dst net.Conn) {
	queue := make(chan chunk, queueChunks)
	var reader sync.WaitGroup
	reader.Go(func() {
		defer close(queue)
		buf := make([]byte, chunkSize)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				select {
				case queue <- chunk{data: bytes.Clone(buf[:n]), due: time.Now().Add(p.delay)}:
				case <-ctx.Done():
					return
				}
			}
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
					fail()
				}
				return
			}
		}
	})
	defer reader.Wait()

	wait := time.NewTimer(time.Hour)
	wait.Stop()
	defer wait.Stop()
	for c := range queue {
		if left := time.Until(c.due); left > 0 {
			wait.Reset(left)
			select {
			case <-wait.C:
			case <-ctx.Done():
				return
			}
		}
		if _, err := dst.Write(c.data); err != nil {
			fail()
			return
		}
	}
	// src ended cleanly (a failure cancelled ctx and closed both): pass the end on.
	if ctx.Err() != nil {
		return
	}
	if tcp, ok := dst.(*net.TCPConn); ok {
		_ = tcp.CloseWrite()
	}
}
