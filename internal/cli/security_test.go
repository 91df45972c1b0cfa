package cli

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/gateway"
)

// Every limit of a GatewayConfig reaches the gateway; none is accepted and then ignored.
func TestConfigLimitsReachTheGateway(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(path, []byte(`apiVersion: agentplane.io/v1alpha1
kind: GatewayConfig
limits:
  maxBodyBytes: 65536
  maxHeaderBytes: 16384
  maxJSONDepth: 20
  maxSSELineBytes: 8192
  maxConcurrentRequests: 50
  maxConcurrentStreamsPerConnection: 7
pushNotifications:
  allowedNetworks: [127.0.0.1/32, "fd00::/8"]
  timeout: 3s
  giveUpAfter: 1h
`), 0o600); err != nil {
		t.Fatal(err)
	}
	sec, err := loadSecurity(path)
	if err != nil {
		t.Fatal(err)
	}
	var o gateway.Options
	closeAll, err := sec.apply(&o, dir, slog.New(slog.DiscardHandler), false)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	if o.MaxBodyBytes != 65536 || o.MaxHeaderBytes != 16384 || o.MaxJSONDepth != 20 || o.MaxSSELineBytes != 8192 ||
		o.MaxConcurrentRequests != 50 || o.MaxStreamsPerConnection != 7 {
		t.Fatalf("limits in the gateway's options: %+v", o)
	}
	if p := o.Push; len(p.AllowedNetworks) != 2 || p.AllowedNetworks[0].String() != "127.0.0.1/32" || p.Timeout != 3*time.Second || p.GiveUpAfter != time.Hour {
		t.Fatalf("push notification options: %+v", p)
	}
}
