package a2a

import (
	"encoding/json"
	"fmt"
	"testing"

	sdk "github.com/a2aproject/a2a-go/v2/a2a"
)

// sdkEnvelope mirrors the A2A Go SDK's server-side JSON-RPC envelope (a2a-go v2
// internal/jsonrpc.ServerRequest), decoded as its server decodes it: encoding/json, whose field
// matching is case-insensitive and keeps the last duplicate.
type sdkEnvelope struct {
	JSONRPC string          `json:"jsonrpc"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params,omitempty"`
	ID      any             `json:"id"`
}

// sdkReading is what an agent built on the SDK reads from a body: method, id, and the ids in
// the params that decide what it does (the message's ids for a send, the task's for the rest).
// refuses is true when the SDK could not decode the params for that method: the agent answers
// with an error and does nothing, so there is nothing to disagree on.
func sdkReading(body []byte, send bool) (method, id, messageID, contextID, taskID string, refuses, ok bool) {
	var env sdkEnvelope
	if json.Unmarshal(body, &env) != nil {
		return "", "", "", "", "", false, false
	}
	id = fmt.Sprint(env.ID)
	if len(env.Params) == 0 {
		return env.Method, id, "", "", "", false, true
	}
	if send {
		var req sdk.SendMessageRequest
		if json.Unmarshal(env.Params, &req) != nil || req.Message == nil {
			return env.Method, id, "", "", "", true, true
		}
		return env.Method, id, req.Message.ID, req.Message.ContextID, string(req.Message.TaskID), false, true
	}
	var get sdk.GetTaskRequest
	if json.Unmarshal(env.Params, &get) != nil {
		return env.Method, id, "", "", "", true, true
	}
	return env.Method, id, "", "", string(get.ID), false, true
}

// gatewayReading is the same from the gateway's parser, for a body it accepts; ok is false when
// the gateway would still refuse it (a send whose message it cannot read).
func gatewayReading(r *Request) (method, id, messageID, contextID, taskID string, ok bool) {
	var v any
	_ = json.Unmarshal(r.ID, &v)
	if n, ok := v.(float64); ok {
		v = n
	}
	id = fmt.Sprint(v)
	if r.Info.NewTask() {
		mi, err := ParseMessageInfo(r.Params, r.Info.Dialect)
		if err != nil {
			return "", "", "", "", "", false
		}
		messageID, contextID, taskID = mi.MessageID, mi.ContextID, mi.TaskID
	} else if tid, err := r.TaskID(); err == nil {
		taskID = tid
	}
	return r.Method, id, messageID, contextID, taskID, true
}

// FuzzGatewayAndSDKAgree is the differential test of the parser: for every body the gateway
// accepts, the A2A Go SDK's server decoding reads the same method, id and task and message ids.
// A body on which they could disagree (duplicate or case-variant keys) must be refused.
func FuzzGatewayAndSDKAgree(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"m","role":"ROLE_USER","parts":[{"text":"x"}]}}}`,
		`{"jsonrpc":"2.0","id":"a","method":"GetTask","params":{"id":"t-1"}}`,
		`{"jsonrpc":"2.0","id":2,"method":"ListTasks","Method":"SendMessage","params":{}}`,
		`{"jsonrpc":"2.0","id":3,"method":"GetTask","params":{"id":"mine","ID":"theirs"}}`,
		`{"jsonrpc":"2.0","id":4,"method":"SendMessage","params":{"message":{"messageId":"m","messageId":"n","role":"ROLE_USER","parts":[]}}}`,
		`{"jsonrpc":"2.0","id":5,"method":"SendMessage","params":{"message":{"messageId":"m","taskId":"t","TaskId":"u","role":"ROLE_USER","parts":[]}}}`,
		`{"jsonrpc":"2.0","id":6,"method":"CancelTask","params":{"id":"t"},"params":{"id":"u"}}`,
		`{"jsonrpc":"2.0","id":7,"method":"GetTask","params":{"id":"t","\u0049d":"u"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, e := ParseRequest(body)
		if e != nil {
			return
		}
		gm, gid, gmsg, gctx, gtask, accepted := gatewayReading(r)
		if !accepted {
			return
		}
		sm, sid, smsg, sctx, stask, refuses, ok := sdkReading(body, r.Info.NewTask())
		if !ok {
			t.Fatalf("the gateway accepted a body the SDK cannot decode: %q", body)
		}
		if refuses {
			return
		}
		if sm != gm || sid != gid || smsg != gmsg || sctx != gctx || stask != gtask {
			t.Fatalf("gateway and SDK disagree on %q:\n gateway: method=%q id=%q message=%q context=%q task=%q\n     sdk: method=%q id=%q message=%q context=%q task=%q",
				body, gm, gid, gmsg, gctx, gtask, sm, sid, smsg, sctx, stask)
		}
	})
}

// TestAmbiguousBodiesAreRefused: the smuggling shapes from the security review.
func TestAmbiguousBodiesAreRefused(t *testing.T) {
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":2,"method":"ListTasks","Method":"SendMessage","params":{}}`,
		`{"jsonrpc":"2.0","id":3,"method":"GetTask","params":{"id":"mine","ID":"theirs"}}`,
		`{"jsonrpc":"2.0","id":6,"method":"CancelTask","params":{"id":"t"},"params":{"id":"u"}}`,
		`{"jsonrpc":"2.0","id":4,"method":"SendMessage","params":{"message":{"messageId":"m","messageId":"n","role":"ROLE_USER","parts":[]}}}`,
		`{"jsonrpc":"2.0","id":5,"method":"SendMessage","params":{"message":{"messageId":"m","parts":[{"text":"a","Text":"b"}],"role":"ROLE_USER"}}}`,
		`{"jsonrpc":"2.0","id":7,"method":"GetTask","params":{"id":"t","\u0049d":"u"}}`,
		`{"jsonrpc":"2.0","id":8,"method":"SendMessage","params":{"message":{"messageId":"m","taskid":"t","role":"ROLE_USER","parts":[]}}}`,
		`{"jsonrpc":"2.0","id":9,"method":"SendMessage","params":{"messAge":{"tAskId":"0"}}}`,
	} {
		if _, e := ParseRequest([]byte(body)); e == nil || e.Code != CodeInvalidRequest {
			t.Errorf("accepted an ambiguous body: %s (%v)", body, e)
		}
	}
}
