//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// prefix starts the name of everything a lab creates: the bridge aplN, its veths aplNv<i>,
	// its namespaces aplN-<site>.
	prefix = "apl"
	// lockDir holds one lock file per lab number; a lab holds its flock while it lives.
	lockDir = "/run/agentplane-lab"
	// netnsDir is where ip netns keeps the namespaces it names.
	netnsDir = "/run/netns"
	// ruleComment marks the firewall rule of a lab, followed by its name.
	ruleComment = "agentplane-lab:"
	// commandTimeout bounds each ip or iptables command.
	commandTimeout = 30 * time.Second
)

// linkName is a link of some lab: its bridge aplN or a veth aplNv<i>.
var linkName = regexp.MustCompile(`^` + prefix + `([0-9]+)(v[0-9]+)?$`)

// netnsName is a namespace of some lab: aplN-<site>.
var netnsName = regexp.MustCompile(`^` + prefix + `([0-9]+)-`)

// Options tune a lab. The zero value is a good default.
type Options struct {
	// LogTail is how many lines of each process's log a failed test prints; 0 means 40.
	LogTail int
}

// Lab is a bridge in the root namespace and the sites on it. Its methods fail the test that
// made it (New's t), so call them from that test's goroutine.
type Lab struct {
	t      testing.TB
	ip     string // the ip command
	name   string // aplN
	hostIP netip.Addr
	opts   Options
	lock   *os.File // the flock that says this lab is alive

	mu    sync.Mutex
	sites []*Site
	procs []*Proc
}

// New creates a lab: it removes what killed runs left, picks a free number N, and creates the
// bridge aplN with 10.213.N.1/24. Everything is removed when t ends. Without root the test is
// skipped, or failed when the environment variable CI is set.
func New(t testing.TB, opts Options) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatalf("the sites lab needs root (network namespaces, a bridge, veths): run the test as root")
		}
		t.Skip("skipped: the sites lab needs root (network namespaces, a bridge, veths); with CI set this is a failure")
	}
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		t.Fatalf("the sites lab needs the ip command: install iproute2 (%v)", err)
	}
	if opts.LogTail <= 0 {
		opts.LogTail = 40
	}
	l := &Lab{t: t, ip: ipPath, opts: opts}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		t.Fatalf("create the lab lock directory: %v", err)
	}
	if err := l.sweep(ctx); err != nil {
		t.Fatalf("remove what earlier labs left: %v", err)
	}
	n, lock, err := l.claim(ctx)
	if err != nil {
		t.Fatalf("pick a lab number: %v", err)
	}
	l.name, l.lock = prefix+strconv.Itoa(n), lock
	l.hostIP = netip.AddrFrom4([4]byte{10, 213, byte(n), 1})
	t.Cleanup(l.cleanup)

	// An earlier lab of this number may have left a firewall rule, which the sweep does not see.
	if err := l.remove(ctx, l.name); err != nil {
		t.Fatalf("remove what an earlier lab %s left: %v", l.name, err)
	}
	for _, args := range [][]string{
		{"link", "add", l.name, "type", "bridge"},
		{"addr", "add", l.hostIP.String() + "/24", "dev", l.name},
		{"link", "set", l.name, "up"},
	} {
		if _, err := l.run(ctx, args...); err != nil {
			t.Fatalf("create the lab bridge: %v", err)
		}
	}
	if err := l.openForwarding(ctx); err != nil {
		t.Fatalf("let bridged traffic of %s through the firewall: %v", l.name, err)
	}
	return l
}

// Name is the lab's name, aplN: the bridge's name and the prefix of its other links and
// namespaces.
func (l *Lab) Name() string { return l.name }

// HostIP is the root namespace's address on the bridge, 10.213.N.1: where proxies listen so that
// sites reach them.
func (l *Lab) HostIP() string { return l.hostIP.String() }

// Leftovers lists what of this lab is still there: namespaces, links, firewall rules and
// processes that are still running. It is empty once the lab's cleanup has run; tests call it
// from a cleanup registered before New to check that.
func (l *Lab) Leftovers() ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	found, err := l.list(ctx)
	if err != nil {
		return nil, err
	}
	left := slices.Concat(found.namespaces[l.name], found.links[l.name])
	rules, err := l.rules(ctx, l.name)
	if err != nil {
		return nil, err
	}
	for range rules {
		left = append(left, "iptables rule "+strings.Join(forwardRule(l.name), " "))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.procs {
		select {
		case <-p.done:
		default:
			left = append(left, fmt.Sprintf("process %s (pid %d)", p.name, p.Pid()))
		}
	}
	return left, nil
}

// cleanup kills the lab's processes and removes its namespaces, links and firewall rule.
func (l *Lab) cleanup() {
	l.mu.Lock()
	procs := slices.Clone(l.procs)
	l.mu.Unlock()
	for _, p := range procs {
		p.kill(-p.Pid())
	}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			l.t.Errorf("process %s (pid %d) did not exit 10s after SIGKILL", p.name, p.Pid())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := l.remove(ctx, l.name); err != nil {
		l.t.Errorf("remove lab %s: %v (the next lab removes what is left)", l.name, err)
	}
	l.lock.Close()
}

// claim takes the first lab number whose lock is free and whose /24 overlaps no route.
func (l *Lab) claim(ctx context.Context) (int, *os.File, error) {
	routes, err := l.run(ctx, "-4", "route", "show", "table", "all")
	if err != nil {
		return 0, nil, err
	}
	taken := routePrefixes(routes)
	for n := 1; n < 255; n++ {
		subnet := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 213, byte(n), 0}), 24)
		if slices.ContainsFunc(taken, subnet.Overlaps) {
			continue
		}
		lock, err := tryLock(prefix + strconv.Itoa(n))
		if err != nil {
			return 0, nil, err
		}
		if lock != nil {
			return n, lock, nil
		}
	}
	return 0, nil, errors.New("every 10.213.N.0/24 is routed or held by another lab: remove the routes or stop the other labs")
}

// routeTypes are the words `ip route` puts before a destination that is not a plain unicast route.
var routeTypes = map[string]bool{
	"unicast": true, "local": true, "broadcast": true, "multicast": true, "anycast": true,
	"blackhole": true, "unreachable": true, "prohibit": true, "throw": true, "nat": true,
}

// routePrefixes are the destinations of `ip route` output; default routes are left out.
func routePrefixes(routes string) []netip.Prefix {
	var out []netip.Prefix
	for line := range strings.Lines(routes) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		dst := fields[0]
		if routeTypes[dst] && len(fields) > 1 {
			dst = fields[1]
		}
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		if p, err := netip.ParsePrefix(dst); err == nil && p.Addr().Is4() {
			out = append(out, p.Masked())
		}
	}
	return out
}

// tryLock takes the lock of lab name. It returns nil, without error, when another process
// holds it, that is when that lab is alive.
func tryLock(name string) (*os.File, error) {
	path := filepath.Join(lockDir, name+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lab lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = fmt.Fprintf(f, "pid %d\n", os.Getpid())
	return f, nil
}

// sweep removes the namespaces, links and processes of every lab whose owner is gone.
func (l *Lab) sweep(ctx context.Context) error {
	found, err := l.list(ctx)
	if err != nil {
		return err
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for name := range found.namespaces {
			if !yield(name) {
				return
			}
		}
		for name := range found.links {
			if _, dup := found.namespaces[name]; !dup && !yield(name) {
				return
			}
		}
	})
	for _, name := range names {
		lock, err := tryLock(name)
		if err != nil {
			return err
		}
		if lock == nil {
			continue // alive
		}
		err = l.remove(ctx, name)
		lock.Close()
		if err != nil {
			return fmt.Errorf("lab %s: %w", name, err)
		}
	}
	return nil
}

// found is what of the labs is on the machine, by lab name.
type found struct {
	namespaces map[string][]string
	links      map[string][]string
}

// list finds the namespaces and links of every lab.
func (l *Lab) list(ctx context.Context) (found, error) {
	f := found{namespaces: map[string][]string{}, links: map[string][]string{}}
	out, err := l.run(ctx, "netns", "list")
	if err != nil {
		return f, err
	}
	for line := range strings.Lines(out) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if m := netnsName.FindStringSubmatch(fields[0]); m != nil {
			lab := prefix + m[1]
			f.namespaces[lab] = append(f.namespaces[lab], fields[0])
		}
	}
	out, err = l.run(ctx, "-o", "link", "show")
	if err != nil {
		return f, err
	}
	for line := range strings.Lines(out) {
		// "7: apl3v0@if2: <BROADCAST,...": the name is the second field, up to '@' or ':'.
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(fields[1], ":"), "@")
		if m := linkName.FindStringSubmatch(name); m != nil {
			lab := prefix + m[1]
			f.links[lab] = append(f.links[lab], name)
		}
	}
	return f, nil
}

// remove kills the processes in lab name's namespaces, then deletes the namespaces, the links
// and the firewall rule. What is not there is not an error.
func (l *Lab) remove(ctx context.Context, name string) error {
	found, err := l.list(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, ns := range found.namespaces[name] {
		if err := l.emptyNamespace(ctx, ns); err != nil {
			errs = append(errs, err)
		}
		if _, err := l.run(ctx, "netns", "delete", ns); err != nil {
			errs = append(errs, err)
		}
	}
	// A veth went with its namespace, unless a process kept the namespace alive; deleting the
	// host end then deletes its peer too.
	for _, link := range found.links[name] {
		if _, err := l.run(ctx, "link", "delete", link); err != nil && l.linkExists(ctx, link) {
			errs = append(errs, err)
		}
	}
	rules, err := l.rules(ctx, name)
	if err != nil {
		errs = append(errs, err)
	}
	for range rules {
		if _, err := runCommand(ctx, "iptables", append([]string{"-D"}, forwardRule(name)...)...); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// linkExists reports whether a link is still there (a veth goes with its peer's namespace).
func (l *Lab) linkExists(ctx context.Context, link string) bool {
	_, err := l.run(ctx, "link", "show", "dev", link)
	return err == nil
}

// emptyNamespace kills every process in namespace ns and waits until they are gone.
func (l *Lab) emptyNamespace(ctx context.Context, ns string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := l.run(ctx, "netns", "pids", ns)
		if err != nil {
			return err
		}
		pids := strings.Fields(out)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %s in namespace %s outlive SIGKILL", strings.Join(pids, " "), ns)
		}
		for _, s := range pids {
			if pid, err := strconv.Atoi(s); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(50 * time.Millisecond) // the kernel reaps them; there is nothing to wait on
	}
}

// openForwarding lets traffic between the sites through the host's firewall, when it would
// otherwise filter it: br_netfilter passes bridged packets to iptables' FORWARD chain only when
// net.bridge.bridge-nf-call-iptables is 1, and that chain lets everything through when it is a
// bare ACCEPT policy. Otherwise one ACCEPT rule for the lab's bridge goes first in the chain.
func (l *Lab) openForwarding(ctx context.Context) error {
	call, err := os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables")
	if err != nil || strings.TrimSpace(string(call)) != "1" {
		return nil // br_netfilter is not loaded, or does not call iptables
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		l.t.Logf("br_netfilter calls iptables, but there is no iptables command to check the FORWARD chain: traffic between sites may be filtered")
		return nil
	}
	chain, err := runCommand(ctx, "iptables", "-S", "FORWARD")
	if err != nil {
		return err
	}
	if !forwardFiltered(chain) {
		return nil
	}
	rule := forwardRule(l.name)
	_, err = runCommand(ctx, "iptables", append([]string{"-I", "FORWARD", "1"}, rule[1:]...)...)
	return err
}

// forwardFiltered reports whether `iptables -S FORWARD` shows a chain that may drop a packet.
func forwardFiltered(chain string) bool {
	return strings.TrimSpace(chain) != "-P FORWARD ACCEPT"
}

// forwardRule is the lab's ACCEPT rule: the chain, then the rule's match and target.
func forwardRule(name string) []string {
	return []string{"FORWARD", "-i", name, "-o", name, "-m", "comment", "--comment", ruleComment + name, "-j", "ACCEPT"}
}

// rules counts the firewall rules of lab name: forwardRule(name), which is all a lab adds.
func (l *Lab) rules(ctx context.Context, name string) (int, error) {
	if _, err := exec.LookPath("iptables"); err != nil {
		return 0, nil
	}
	chain, err := runCommand(ctx, "iptables", "-S", "FORWARD")
	if err != nil {
		return 0, err
	}
	return countRules(chain, name), nil
}

// countRules counts the rules of lab name in `iptables -S FORWARD` output, which quotes the
// comment.
func countRules(chain, name string) int {
	n := 0
	for line := range strings.Lines(chain) {
		fields := strings.Fields(line)
		if len(fields) > 1 && fields[0] == "-A" && slices.ContainsFunc(fields, func(f string) bool {
			return strings.Trim(f, `"`) == ruleComment+name
		}) {
			n++
		}
	}
	return n
}

// run runs the ip command.
func (l *Lab) run(ctx context.Context, args ...string) (string, error) {
	return runCommand(ctx, l.ip, args...)
}

// runCommand runs a command and returns its output; its error names the command and carries
// what it printed.
func runCommand(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
