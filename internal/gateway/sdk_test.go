package gateway

import (
	"net/http"
	"slices"
	"testing"
	"time"

	sdk "github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2aclient"
	"github.com/a2aproject/a2a-go/v2/a2aclient/agentcard"

	"github.com/agentplane/agentplane/internal/testutil"
)

// bearer adds a caller's API key to every request.
type bearer string

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+string(b))
	return http.DefaultTransport.RoundTrip(r)
}

// sdkClient is the official Go SDK's client, made as its documentation shows: the card resolved
// from the agent's plain URL (no trailing slash), the transport chosen from the card.
func sdkClient(t *testing.T, agentURL, key string, binding sdk.TransportProtocol) *a2aclient.Client {
	t.Helper()
	hc := &http.Client{Transport: bearer(key), Timeout: 30 * time.Second}
	card, err := agentcard.NewResolver(hc).Resolve(t.Context(), agentURL)
	if err != nil {
		t.Fatalf("resolving the card from %s: %v", agentURL, err)
	}
	c, err := a2aclient.NewFromCard(t.Context(), card, a2aclient.WithJSONRPCTransport(hc), a2aclient.WithRESTTransport(hc),
		a2aclient.WithConfig(a2aclient.Config{PreferredTransports: []sdk.TransportProtocol{binding}}))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The official Go SDK client works against the gateway over both bindings: send, stream, get,
// list (each tenant sees only its own), cancel, subscribe, push configs with a live receiver,
// and the extended card.
func TestOfficialSDKClientOverBothBindings(t *testing.T) {
	hook := newWebhook(t, func(notification, []notification) bool { return false })
	g, base, keys := tenantGatewayOf(t, loopbackAllowed)
	startPusher(t, g)
	agentURL := base + "/agents/triage"
	for _, binding := range []sdk.TransportProtocol{sdk.TransportProtocolJSONRPC, sdk.TransportProtocolHTTPJSON} {
		t.Run(string(binding), func(t *testing.T) {
			ctx := t.Context()
			alice := sdkClient(t, agentURL, keys["alice"], binding)
			bob := sdkClient(t, agentURL, keys["bob"], binding)

			res, err := alice.SendMessage(ctx, userMessage("chest pain since this morning"))
			if err != nil {
				t.Fatal(err)
			}
			task, ok := res.(*sdk.Task)
			if !ok || task.Status.State != sdk.TaskStateCompleted {
				t.Fatalf("send: %#v", res)
			}
			got, err := alice.GetTask(ctx, &sdk.GetTaskRequest{ID: task.ID})
			if err != nil || got.ID != task.ID || got.Status.State != sdk.TaskStateCompleted {
				t.Fatalf("get: %+v %v", got, err)
			}
			if _, err := bob.GetTask(ctx, &sdk.GetTaskRequest{ID: task.ID}); err == nil {
				t.Fatal("another tenant read alice's task")
			}

			var streamed string
			var last sdk.TaskState
			for ev, err := range alice.SendStreamingMessage(ctx, userMessage("stream it")) {
				if err != nil {
					t.Fatalf("stream: %v", err)
				}
				switch e := ev.(type) {
				case *sdk.Task:
					streamed, last = string(e.ID), e.Status.State
				case *sdk.TaskStatusUpdateEvent:
					streamed, last = string(e.TaskID), e.Status.State
				}
			}
			if streamed == "" || last != sdk.TaskStateCompleted {
				t.Fatalf("stream ended at %q in %s", streamed, last)
			}
			var resubscribed int
			for ev, err := range alice.SubscribeToTask(ctx, &sdk.SubscribeToTaskRequest{ID: sdk.TaskID(streamed)}) {
				if err != nil {
					t.Fatalf("subscribe: %v", err)
				}
				if tk, ok := ev.(*sdk.Task); ok && tk.Status.State == sdk.TaskStateCompleted {
					resubscribed++
				}
			}
			if resubscribed != 1 {
				t.Fatalf("subscribe to an ended task: %d final tasks", resubscribed)
			}
			if _, err := alice.CancelTask(ctx, &sdk.CancelTaskRequest{ID: task.ID}); err == nil {
				t.Fatal("canceled an ended task")
			}

			if _, err := bob.SendMessage(ctx, userMessage("bob's")); err != nil {
				t.Fatal(err)
			}
			list, err := alice.ListTasks(ctx, &sdk.ListTasksRequest{PageSize: 100})
			if err != nil {
				t.Fatalf("list: %v", err)
			}
			ids := []sdk.TaskID{}
			for _, tk := range list.Tasks {
				ids = append(ids, tk.ID)
			}
			if !slices.Contains(ids, task.ID) || !slices.Contains(ids, sdk.TaskID(streamed)) || list.TotalSize != len(ids) {
				t.Fatalf("alice's list: %v total %d", ids, list.TotalSize)
			}
			theirs, err := bob.ListTasks(ctx, &sdk.ListTasksRequest{})
			if err != nil {
				t.Fatal(err)
			}
			for _, tk := range theirs.Tasks {
				if slices.Contains(ids, tk.ID) {
					t.Fatalf("bob lists alice's task %s", tk.ID)
				}
			}

			cfg, err := alice.CreateTaskPushConfig(ctx, &sdk.PushConfig{TaskID: task.ID, URL: hook.srv.URL, Token: "tok-" + string(binding)})
			if err != nil || cfg.ID == "" {
				t.Fatalf("create push config: %+v %v", cfg, err)
			}
			if one, err := alice.GetTaskPushConfig(ctx, &sdk.GetTaskPushConfigRequest{TaskID: task.ID, ID: cfg.ID}); err != nil || one.URL != hook.srv.URL {
				t.Fatalf("get push config: %+v %v", one, err)
			}
			if all, err := alice.ListTaskPushConfigs(ctx, &sdk.ListTaskPushConfigRequest{TaskID: task.ID}); err != nil || len(all) != 1 {
				t.Fatalf("list push configs: %+v %v", all, err)
			}
			// The task has ended: its final state goes to the new webhook at once.
			testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
				for _, n := range hook.received() {
					if n.taskID == string(task.ID) && n.token == "tok-"+string(binding) && n.state == "TASK_STATE_COMPLETED" {
						return nil
					}
				}
				return testutil.Check(false, "the webhook has %d notifications, none of task %s", len(hook.received()), task.ID)
			})
			if err := alice.DeleteTaskPushConfig(ctx, &sdk.DeleteTaskPushConfigRequest{TaskID: task.ID, ID: cfg.ID}); err != nil {
				t.Fatalf("delete push config: %v", err)
			}
			if _, err := bob.CreateTaskPushConfig(ctx, &sdk.PushConfig{TaskID: task.ID, URL: hook.srv.URL}); err == nil {
				t.Fatal("bob set a webhook on alice's task")
			}

			ext, err := alice.GetExtendedAgentCard(ctx, &sdk.GetExtendedAgentCardRequest{})
			if err != nil {
				t.Fatalf("extended card: %v", err)
			}
			if len(ext.Skills) < 2 || len(ext.SupportedInterfaces) == 0 {
				t.Fatalf("extended card: %+v", ext)
			}
			for _, i := range ext.SupportedInterfaces {
				if i.URL != agentURL+"/" {
					t.Errorf("extended card names %s, not the gateway's %s/", i.URL, agentURL)
				}
			}
		})
	}
}
