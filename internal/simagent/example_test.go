package simagent_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2aclient"

	"github.com/agentplane/agentplane/internal/simagent"
)

func ExampleServe() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- simagent.Serve(ctx, simagent.Config{Name: "triage", Replica: "1", Latency: mustLatency("10ms")}, ln, nil)
	}()

	client, err := a2aclient.NewFromEndpoints(ctx, []*a2a.AgentInterface{
		a2a.NewAgentInterface("http://"+ln.Addr().String()+"/", a2a.TransportProtocolJSONRPC),
	})
	if err != nil {
		panic(err)
	}
	res, err := client.SendMessage(ctx, &a2a.SendMessageRequest{
		Message: a2a.NewMessage(a2a.MessageRoleUser, a2a.NewTextPart("summarize this short note")),
	})
	if err != nil {
		panic(err)
	}
	task := res.(*a2a.Task)
	fmt.Println(task.Status.State)
	fmt.Println(task.Artifacts[0].Parts[0].Text())
	fmt.Println(task.Metadata[simagent.MetaReplica])

	cancel()
	fmt.Println(<-done)
	// Output:
	// TASK_STATE_COMPLETED
	// triage-1: processed 4 words
	// triage-1
	// <nil>
}

func mustLatency(s string) simagent.Latency {
	l, err := simagent.ParseLatency(s)
	if err != nil {
		panic(err)
	}
	return l
}

// A conversation of two turns on an agent in --llm mode: the second turn
// (same contextId) finds the first in the replica's context cache.
func ExampleServe_llm() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	model := simagent.DefaultLLMConfig()
	model.Enabled = true
	model.PrefillPerToken, model.TPOT = time.Microsecond, time.Millisecond // fast, for the example
	go func() { done <- simagent.Serve(ctx, simagent.Config{Name: "coder", LLM: model}, ln, nil) }()

	client, err := a2aclient.NewFromEndpoints(ctx, []*a2a.AgentInterface{
		a2a.NewAgentInterface("http://"+ln.Addr().String()+"/", a2a.TransportProtocolJSONRPC),
	})
	if err != nil {
		panic(err)
	}
	var contextID string
	for turn, prompt := range []int{2000, 150} {
		msg := a2a.NewMessage(a2a.MessageRoleUser, a2a.NewTextPart("next step"))
		msg.ContextID = contextID
		msg.Metadata = map[string]any{simagent.MetaPromptTokens: prompt, simagent.MetaMaxTokens: 50}
		res, err := client.SendMessage(ctx, &a2a.SendMessageRequest{Message: msg})
		if err != nil {
			panic(err)
		}
		task := res.(*a2a.Task)
		contextID = task.ContextID
		m := task.Metadata[simagent.MetaLLM].(map[string]any)
		fmt.Println("turn", turn+1, "hit", m["cacheHit"], "prompt", m["promptTokens"], "cached", m["cachedTokens"], "context", m["contextTokens"])
	}

	cancel()
	fmt.Println(<-done)
	// Output:
	// turn 1 hit false prompt 2000 cached 0 context 2050
	// turn 2 hit true prompt 2200 cached 2050 context 2250
	// <nil>
}
