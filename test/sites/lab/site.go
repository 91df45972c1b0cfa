//go:build linux

package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// maxSites bounds the sites of a lab: their addresses are .10 up to .209 of the /24.
const maxSites = 200

// siteName is what a site may be called: it becomes part of the namespace's name.
var siteName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)

// Site is a network namespace on the lab's bridge, with one address.
type Site struct {
	lab  *Lab
	name string
	ns   string // aplN-<name>
	veth string // the host end, aplNv<i>, a port of the bridge
	ip   netip.Addr
}

// AddSite creates a site: the namespace aplN-<name> with lo up and eth0 at 10.213.N.(10+i), the
// i-th site's address, with a default route via the bridge. Names are lower-case letters, digits
// and dashes, at most 32 long, and unique in the lab.
func (l *Lab) AddSite(name string) *Site {
	l.t.Helper()
	if !siteName.MatchString(name) {
		l.t.Fatalf("site name %q: use 1 to 32 lower-case letters, digits and inner dashes", name)
	}
	l.mu.Lock()
	i := len(l.sites)
	for _, s := range l.sites {
		if s.name == name {
			l.mu.Unlock()
			l.t.Fatalf("site %q is already in lab %s: give each site its own name", name, l.name)
		}
	}
	if i >= maxSites {
		l.mu.Unlock()
		l.t.Fatalf("lab %s has %d sites, the most it can address", l.name, maxSites)
	}
	host := l.hostIP.As4()
	s := &Site{
		lab:  l,
		name: name,
		ns:   l.name + "-" + name,
		veth: l.name + "v" + strconv.Itoa(i),
		ip:   netip.AddrFrom4([4]byte{host[0], host[1], host[2], byte(10 + i)}),
	}
	l.sites = append(l.sites, s)
	l.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"netns", "add", s.ns},
		{"link", "add", s.veth, "type", "veth", "peer", "name", "eth0", "netns", s.ns},
		{"link", "set", s.veth, "master", l.name, "up"},
		{"-n", s.ns, "addr", "add", s.ip.String() + "/24", "dev", "eth0"},
		{"-n", s.ns, "link", "set", "lo", "up"},
		{"-n", s.ns, "link", "set", "eth0", "up"},
		{"-n", s.ns, "route", "add", "default", "via", l.hostIP.String()},
	} {
		if _, err := l.run(ctx, args...); err != nil {
			l.t.Fatalf("create site %s: %v", name, err)
		}
	}
	return s
}

// Name is the site's name, as given to AddSite.
func (s *Site) Name() string { return s.name }

// Namespace is the name of the site's network namespace, for ip netns.
func (s *Site) Namespace() string { return s.ns }

// IP is the site's address, 10.213.N.(10+i).
func (s *Site) IP() string { return s.ip.String() }

// Addr is the site's address with a port, host:port.
func (s *Site) Addr(port int) string {
	return netip.AddrPortFrom(s.ip, uint16(port)).String()
}

// Cut takes the site off the network: the host end of its veth goes down, so the site reaches
// nothing and nothing reaches it. Connections across the cut stall as over a broken link, until
// a timeout or a ping of either end gives up on them. Processes inside the site keep running
// and still reach each other.
func (s *Site) Cut() {
	s.lab.t.Helper()
	s.setLink("down")
}

// Restore puts a cut site back on the network.
func (s *Site) Restore() {
	s.lab.t.Helper()
	s.setLink("up")
}

func (s *Site) setLink(state string) {
	s.lab.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := s.lab.run(ctx, "link", "set", s.veth, state); err != nil {
		s.lab.t.Fatalf("set site %s %s: %v", s.name, state, err)
	}
}

// Dial connects from inside the site, as a process of the site would: the socket belongs to the
// site's namespace, so it reaches what the site reaches and is cut with it. The address is an IP
// and a port. It makes a Site a nats.CustomDialer.
func (s *Site) Dial(network, address string) (net.Conn, error) {
	return s.DialContext(context.Background(), network, address)
}

// DialContext is Dial with a context, as http.Transport.DialContext takes it. A dial without a
// deadline gives up after 2s.
func (s *Site) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if _, err := netip.ParseAddrPort(address); err != nil {
		return nil, fmt.Errorf("dial %s from site %s: the address must be ip:port (a name would be resolved outside the site): %w", address, s.name, err)
	}
	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	// The socket takes the namespace of the thread that creates it. The dialing goroutine keeps
	// its thread while it is in the site; if it cannot return to the root namespace, it ends
	// still locked, and the runtime then retires the thread instead of reusing it.
	go func() {
		runtime.LockOSThread()
		conn, back, err := s.dialInside(ctx, network, address)
		if back {
			runtime.UnlockOSThread()
		}
		done <- result{conn, err}
	}()
	r := <-done
	return r.conn, r.err
}

// dialInside moves the calling thread into the site, dials, and moves it back; back reports
// whether the thread is in its own namespace again.
func (s *Site) dialInside(ctx context.Context, network, address string) (conn net.Conn, back bool, err error) {
	own, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, true, fmt.Errorf("dial from site %s: open this thread's namespace: %w", s.name, err)
	}
	defer own.Close()
	site, err := os.Open(filepath.Join(netnsDir, s.ns))
	if err != nil {
		return nil, true, fmt.Errorf("dial from site %s: open its namespace (was the lab cleaned up?): %w", s.name, err)
	}
	defer site.Close()
	if err := setns(site); err != nil {
		return nil, true, fmt.Errorf("dial from site %s: enter its namespace: %w", s.name, err)
	}
	d := net.Dialer{Timeout: dialTimeout, FallbackDelay: -1}
	conn, err = d.DialContext(ctx, network, address)
	if nsErr := setns(own); nsErr != nil {
		if conn != nil {
			conn.Close()
		}
		return nil, false, fmt.Errorf("dial from site %s: return to the root namespace: %w", s.name, nsErr)
	}
	if err != nil {
		return nil, true, fmt.Errorf("dial %s from site %s: %w", address, s.name, err)
	}
	return conn, true, nil
}

// setns moves the calling thread into the network namespace of f.
func setns(f *os.File) error {
	return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
}
