package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/agentplane/agentplane/internal/a2a"
	"github.com/agentplane/agentplane/internal/discovery"
)

// A sink is how a task's answer reaches its client: the dispatcher runs every task the same
// way and hands what the agent says to the task's sink. A blocking call writes the final answer,
// a stream relays each event, a queued task has no client at all. A sink never fails the task:
// when its client has gone it drops what it is given, and the task runs to its end regardless.
type sink interface {
	// streaming reports whether the client takes an event stream.
	streaming() bool
	// answer delivers a complete JSON-RPC answer (ids already the gateway's) from ep.
	answer(ep discovery.Endpoint, header http.Header, status int, body []byte)
	// event delivers one stream event from ep, opening the stream first.
	event(ep discovery.Endpoint, data []byte)
	// comment passes a keep-alive on.
	comment()
	// events is how many events reached the client so far.
	events() int
	// fail ends the exchange with an error (a *refusedError or an *a2a.Error).
	fail(err error)
}

// blockingSink answers a blocking call once, with the final answer or an error.
type blockingSink struct {
	w       http.ResponseWriter
	id      json.RawMessage
	replica *string
}

func (s *blockingSink) streaming() bool { return false }
func (s *blockingSink) comment()        {}
func (s *blockingSink) events() int     { return 0 }

func (s *blockingSink) answer(ep discovery.Endpoint, header http.Header, status int, body []byte) {
	*s.replica = ep.Name
	writeAnswer(s.w, header, status, ep, body)
}

func (s *blockingSink) event(ep discovery.Endpoint, data []byte) {
	s.answer(ep, nil, http.StatusOK, data)
}
func (s *blockingSink) fail(err error) { rpcErrorFor(s.w, s.id, err) }

// streamSink relays a stream to its client. Once the client has gone, events are dropped and
// the task goes on.
type streamSink struct {
	sw      *sseWriter
	id      json.RawMessage
	replica *string
}

func newStreamSink(w http.ResponseWriter, id json.RawMessage, replica *string) *streamSink {
	return &streamSink{sw: newSSEWriter(w), id: id, replica: replica}
}

func (s *streamSink) streaming() bool { return true }
func (s *streamSink) events() int     { return s.sw.events }
func (s *streamSink) comment()        { _ = s.sw.comment() }

func (s *streamSink) answer(ep discovery.Endpoint, header http.Header, status int, body []byte) {
	if s.sw.started {
		s.event(ep, body)
		return
	}
	*s.replica = ep.Name
	s.sw.started = true // nothing else is written to this client
	writeAnswer(s.sw.w, header, status, ep, body)
}

func (s *streamSink) event(ep discovery.Endpoint, data []byte) {
	if ep.Name != "" {
		*s.replica = ep.Name
	}
	_ = s.sw.start(ep.Name)
	_ = s.sw.event(data)
}

func (s *streamSink) fail(err error) {
	if !s.sw.started {
		s.sw.started = true
		rpcErrorFor(s.sw.w, s.id, err)
		return
	}
	_ = s.sw.event(a2a.ErrorResponse(s.id, asRPCError(err)))
}

// noClient is the sink of a queued task: nobody waits for it, the journal keeps its result.
type noClient struct{}

func (noClient) streaming() bool                                     { return false }
func (noClient) answer(discovery.Endpoint, http.Header, int, []byte) {}
func (noClient) event(discovery.Endpoint, []byte)                    {}
func (noClient) comment()                                            {}
func (noClient) events() int                                         { return 0 }
func (noClient) fail(error)                                          {}

// writeAnswer writes a replica's non-streaming answer, with the agent's protocol headers.
func writeAnswer(w http.ResponseWriter, from http.Header, status int, ep discovery.Endpoint, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	for _, k := range []string{"A2A-Version", "A2A-Extensions", "X-A2A-Extensions"} {
		if v := from.Values(k); len(v) > 0 {
			h[k] = v
		}
	}
	if ep.Name != "" {
		h.Set(HeaderReplica, ep.Name)
	}
	h.Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
