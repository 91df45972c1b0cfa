// Package lab runs several sites on one Linux machine for end-to-end tests: each site is a
// network namespace on a shared bridge, its processes (nats-server, agentplane up) run inside
// it, and the latency between sites comes from delaying TCP proxies. A test can cut a site off
// and restore it. The package needs root; it is not a network emulator beyond that (no loss,
// no bandwidth limits, no partitions other than a whole site cut off).
//
// Layout. New picks a free number N (1-254) and creates the bridge aplN in the root namespace
// with 10.213.N.1/24; the root namespace is where the test, its clients and the proxies live.
// AddSite creates the namespace aplN-<site>, and a veth pair whose host end aplNv<i> is a port
// of the bridge and whose other end is eth0 inside the namespace, with 10.213.N.(10+i)/24 and a
// default route via 10.213.N.1. The root namespace reaches every site by its IP, and sites reach
// each other across the bridge. N is taken so that its /24 overlaps no route of the machine and
// no other lab holds it, so labs of concurrent test processes do not collide. Site.Cut sets the
// host end of the veth down: the site then reaches nothing and nothing reaches it, and
// connections across the cut stall as over a broken link. Site.Restore sets it up again.
//
// Latency. The kernel has no netem, so Delay is a userspace TCP proxy listening in the root
// namespace (normally on the bridge IP) that holds every chunk for a fixed time in each
// direction, keeping order; a route or leaf connection pointed at it sees an RTT of twice the
// delay. Servers are configured with no_advertise so that they do not learn each other's direct
// addresses, which would bypass the proxies.
//
// Processes. Site.Start runs a command inside the site's namespace (ip netns exec), in its own
// process group, with its output in a log file; Proc.Kill9 kills only the main process (a crash),
// Proc.Kill the whole group, Proc.Stop asks the group to stop and kills it after StopGrace.
// NATSServer builds the nats-server of the version go.mod requires, once per machine, and
// ClusterConfig and LeafConfig write its configuration files.
//
// Cleanup. Everything a lab creates is removed in t.Cleanup, also when the test fails or panics:
// the processes (process group killed), then the namespaces, the links and any firewall rule.
// A failed test first prints the last lines of each process's log. A run that was killed before
// its cleanup leaves its namespaces and links behind; the next New removes those of any lab whose
// owner is gone. Ownership is a flock on /run/agentplane-lab/aplN.lock, held for the lab's life
// and released by the kernel when its process dies. Nothing without the apl prefix is touched.
//
// Host settings. When br_netfilter is loaded and calls iptables for bridged traffic, and the
// FORWARD chain is not a bare ACCEPT policy, New inserts one ACCEPT rule for traffic within its
// bridge (comment agentplane-lab:aplN) and removes it on cleanup. No sysctl is changed:
// net.ipv4.ip_forward is not needed, since sites share one link with each other and with the
// root namespace.
package lab
