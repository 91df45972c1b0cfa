package gateway

import (
	"net/http"
	"strings"
	"testing"

	"github.com/agentplane/agentplane/internal/simagent"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/testutil"
)

// BenchmarkSendMessage measures the gateway's own cost per blocking task: a trivial agent that
// answers at once, the embedded JetStream journal, real loopback HTTP on both sides.
func BenchmarkSendMessage(b *testing.B) {
	for _, journal := range []string{"memory", "jetstream"} {
		b.Run(journal, func(b *testing.B) {
			a0 := startAgentB(b, simagent.Config{MaxConcurrency: 0})
			var j store.Journal = store.NewMemory()
			if journal == "jetstream" {
				js, err := store.Open(b.Context(), store.Options{DataDir: b.TempDir()})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { js.Close() })
				j = js
			}
			g, err := New(Options{Source: testutil.NewSource(testutil.Agent("triage", 1000, a0)), Journal: j})
			if err != nil {
				b.Fatal(err)
			}
			srv := newServer(b, g.Handler())
			body := sendV1(1, "hello")
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					res, err := client.Post(srv+"/agents/triage", "application/json", strings.NewReader(body))
					if err != nil {
						b.Error(err)
						return
					}
					drain(res)
				}
			})
		})
	}
}
