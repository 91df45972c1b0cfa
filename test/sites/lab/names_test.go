//go:build linux

package lab

import (
	"net/netip"
	"slices"
	"testing"
)

// A lab removes only what carries its prefix: never another suite's bridge or namespace.
func TestOnlyLabNamesAreTaken(t *testing.T) {
	links := map[string]bool{
		"apl1": true, "apl12": true, "apl12v0": true, "apl3v17": true,
		"apcni0": false, "apl": false, "aplx": false, "apl1x": false, "apl1v": false, "eth0": false, "xapl1": false,
	}
	for name, want := range links {
		if got := linkName.MatchString(name); got != want {
			t.Errorf("link %q taken as a lab's: %v, want %v", name, got, want)
		}
	}
	namespaces := map[string]bool{
		"apl1-east": true, "apl200-clinic-2": true,
		"cni-70f153aa-c7bd-5d48-b37d-7402dd1e0ad6": false, "apl-east": false, "aplx-east": false, "apl1": false,
	}
	for name, want := range namespaces {
		if got := netnsName.MatchString(name); got != want {
			t.Errorf("namespace %q taken as a lab's: %v, want %v", name, got, want)
		}
	}
}

func TestRoutePrefixes(t *testing.T) {
	routes := `default via 192.0.2.1 dev eth0
10.88.0.0/16 dev apcni0 proto kernel scope link src 10.88.0.1 linkdown
10.213.4.0/24 dev apl4 proto kernel scope link src 10.213.4.1
local 10.213.4.1 dev apl4 table local proto kernel scope host src 10.213.4.1
broadcast 10.213.4.255 dev apl4 table local proto kernel scope link src 10.213.4.1
blackhole 10.213.0.0/16
`
	got := routePrefixes(routes)
	want := []netip.Prefix{
		netip.MustParsePrefix("10.88.0.0/16"),
		netip.MustParsePrefix("10.213.4.0/24"),
		netip.MustParsePrefix("10.213.4.1/32"),
		netip.MustParsePrefix("10.213.4.255/32"),
		netip.MustParsePrefix("10.213.0.0/16"),
	}
	if !slices.Equal(got, want) {
		t.Fatalf("routePrefixes = %v, want %v", got, want)
	}
}

func TestForwardFiltered(t *testing.T) {
	tests := []struct {
		chain string
		want  bool
	}{
		{"-P FORWARD ACCEPT\n", false},
		{"-P FORWARD DROP\n", true},
		{"-P FORWARD ACCEPT\n-A FORWARD -j DOCKER-USER\n", true},
	}
	for _, tt := range tests {
		if got := forwardFiltered(tt.chain); got != tt.want {
			t.Errorf("forwardFiltered(%q) = %v, want %v", tt.chain, got, tt.want)
		}
	}
}

// The rule as iptables -S prints it: the comment in quotes.
func TestCountRules(t *testing.T) {
	chain := `-P FORWARD DROP
-A FORWARD -i apl2 -o apl2 -m comment --comment "agentplane-lab:apl2" -j ACCEPT
-A FORWARD -i apl25 -o apl25 -m comment --comment "agentplane-lab:apl25" -j ACCEPT
-A FORWARD -j DOCKER-USER
`
	for name, want := range map[string]int{"apl2": 1, "apl25": 1, "apl3": 0} {
		if got := countRules(chain, name); got != want {
			t.Errorf("countRules(%s) = %d, want %d", name, got, want)
		}
	}
}
