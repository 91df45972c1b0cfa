package simagent_test

import (
	"context"
	"fmt"
	"net"

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
