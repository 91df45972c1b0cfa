package audit_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/agentplane/agentplane/internal/audit"
)

func Example() {
	dir, _ := os.MkdirTemp("", "audit")
	defer os.RemoveAll(dir)
	w, err := audit.Open(audit.Options{Path: filepath.Join(dir, "audit.jsonl")})
	if err != nil {
		panic(err)
	}
	// The gateway writes one record per call, before it completes the response.
	err = w.Write(context.Background(), audit.Record{Subject: "dr-who", Tenant: "clinic-a", Agent: "triage",
		Method: "SendMessage", TaskID: "t-1", Outcome: "ok", HTTPStatus: 200, LatencyMs: 1200, Replica: "triage-0"})
	if err != nil {
		panic(err)
	}
	w.Close()
	files, _ := filepath.Glob(filepath.Join(dir, "audit-*.jsonl"))
	rep, err := audit.Verify(files...)
	fmt.Println(rep.Records, rep.LastSeq, err)
	// Output: 2 2 <nil>
}
