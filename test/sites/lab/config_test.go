package lab

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// The configurations are read by nats-server's own parser, so that a misspelt option name
// fails here rather than in a server that ignores it.
func TestClusterConfigIsReadAsMeant(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.conf")
	ClusterConfig{
		ServerName:    "a",
		Listen:        "10.213.7.10:4222",
		Monitor:       "10.213.7.10:8222",
		StoreDir:      filepath.Join(dir, "js"),
		Domain:        "hub",
		ClusterName:   "lab",
		ClusterListen: "10.213.7.10:6222",
		Routes:        []string{"nats://10.213.7.1:40001", "nats://10.213.7.1:40002"},
		LeafListen:    "10.213.7.10:7422",
	}.WriteFile(t, path)

	o, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server does not read the configuration: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"server_name", o.ServerName, "a"},
		{"listen", o.Host + ":" + strconv.Itoa(o.Port), "10.213.7.10:4222"},
		{"http", o.HTTPHost + ":" + strconv.Itoa(o.HTTPPort), "10.213.7.10:8222"},
		{"jetstream", o.JetStream, true},
		{"store_dir", o.StoreDir, filepath.Join(dir, "js")},
		{"domain", o.JetStreamDomain, "hub"},
		{"ping_interval", o.PingInterval, time.Second},
		{"ping_max", o.MaxPingsOut, 3},
		{"cluster name", o.Cluster.Name, "lab"},
		{"cluster listen", o.Cluster.Host + ":" + strconv.Itoa(o.Cluster.Port), "10.213.7.10:6222"},
		{"cluster no_advertise", o.Cluster.NoAdvertise, true},
		{"cluster ping_interval", o.Cluster.PingInterval, time.Second},
		{"cluster ping_max", o.Cluster.MaxPingsOut, 3},
		{"routes", len(o.Routes), 2},
		{"first route", o.Routes[0].Host, "10.213.7.1:40001"},
		{"leafnodes listen", o.LeafNode.Host + ":" + strconv.Itoa(o.LeafNode.Port), "10.213.7.10:7422"},
		{"max_memory_store", o.JetStreamMaxMemory, int64(maxMemoryStore)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: nats-server reads %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestLeafConfigIsReadAsMeant(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "clinic.conf")
	LeafConfig{
		ServerName:   "clinic",
		Listen:       "10.213.7.11:4222",
		StoreDir:     filepath.Join(dir, "js"),
		Domain:       "clinic",
		Remotes:      []string{"nats://10.213.7.1:40003"},
		Reconnect:    500 * time.Millisecond,
		PingInterval: 2 * time.Second,
		PingMax:      2,
	}.WriteFile(t, path)

	o, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server does not read the configuration: %v", err)
	}
	if len(o.LeafNode.Remotes) != 1 || len(o.LeafNode.Remotes[0].URLs) != 1 {
		t.Fatalf("leafnodes remotes: nats-server reads %+v, want one remote with one URL", o.LeafNode.Remotes)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"domain", o.JetStreamDomain, "clinic"},
		{"remote url", o.LeafNode.Remotes[0].URLs[0].Host, "10.213.7.1:40003"},
		{"leafnodes reconnect", o.LeafNode.ReconnectInterval, 500 * time.Millisecond},
		{"ping_interval", o.PingInterval, 2 * time.Second},
		{"ping_max", o.MaxPingsOut, 2},
		{"no cluster", o.Cluster.Name, ""},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: nats-server reads %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestConfigRefusesWhatItCannotWrite(t *testing.T) {
	tests := []struct {
		name   string
		render func() (string, error)
		want   string
	}{
		{"no server name", ClusterConfig{Listen: "a:1", StoreDir: "/s"}.Render, "server_name is required"},
		{"routes without a cluster", ClusterConfig{ServerName: "a", Listen: "a:1", StoreDir: "/s", Routes: []string{"nats://b:1"}}.Render, "need a ClusterName"},
		{"cluster without listen", ClusterConfig{ServerName: "a", Listen: "a:1", StoreDir: "/s", ClusterName: "c"}.Render, "listen is required"},
		{"a quote", ClusterConfig{ServerName: `a"b`, Listen: "a:1", StoreDir: "/s"}.Render, "not supported"},
		{"leaf without domain", LeafConfig{ServerName: "l", Listen: "a:1", StoreDir: "/s", Remotes: []string{"nats://h:1"}}.Render, "Domain"},
		{"leaf without remotes", LeafConfig{ServerName: "l", Listen: "a:1", StoreDir: "/s", Domain: "d"}.Render, "Remotes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.render()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Render() error = %v, want one that says %q", err, tt.want)
			}
		})
	}
}
