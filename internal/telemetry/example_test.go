package telemetry_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/agentplane/agentplane/internal/telemetry"
)

// The gateway's side of one task: metrics at each step, a span per step, and the trace
// context injected into the request to the replica.
func Example() {
	m := telemetry.NewMetrics(telemetry.Options{Version: "v0.1.0", NoRuntimeCollectors: true})
	m.SetSnapshot(func() telemetry.Snapshot {
		return telemetry.Snapshot{Replicas: []telemetry.ReplicaSample{
			{Agent: "triage", Replica: "triage-0", Site: "clinic-a", State: "Running", Ready: true, InFlight: 1, Capacity: 4},
		}}
	})

	ctx, task := telemetry.StartTask(context.Background(), "triage", "SendMessage", "")
	start := time.Now()
	m.TaskStarted("triage", "SendMessage")
	telemetry.SetTaskID(ctx, "019a-task")

	_, queue := telemetry.StartQueue(ctx)
	m.QueueWait(ctx, "triage", time.Since(start))
	telemetry.End(queue, nil)

	dctx, dispatch := telemetry.StartDispatch(ctx, "triage-0", 0)
	up, _ := http.NewRequestWithContext(dctx, http.MethodPost, "http://127.0.0.1:9/", nil)
	telemetry.Inject(dctx, up.Header)
	m.Dispatch(dctx, "triage", "triage-0", "ok", 2*time.Second)
	telemetry.End(dispatch, nil)

	m.TaskFinished(ctx, "triage", "SendMessage", "completed", 2*time.Second)
	telemetry.End(task, nil)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if strings.HasPrefix(line, "agentplane_tasks_finished_total") || strings.HasPrefix(line, "agentplane_replica_in_flight") {
			fmt.Println(line)
		}
	}
	// Output:
	// agentplane_replica_in_flight{agent="triage",replica="triage-0",site="clinic-a",zone=""} 1
	// agentplane_tasks_finished_total{agent="triage",method="SendMessage",outcome="completed"} 1
}
