package fleet

import (
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

const key = "0123456789abcdef0123456789abcdef"

func TestTokenCarriesTheCallerAndExpires(t *testing.T) {
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	s, err := NewSigner([]byte(key), func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Sign(Claims{Origin: "gw-a", OriginSite: "clinic", Subject: "nurse-1", Tenant: "clinic-a", Groups: []string{"nurses"}, Agent: "triage", Task: "t1"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Verify(tok)
	if err != nil || c.Subject != "nurse-1" || c.Tenant != "clinic-a" || c.Groups[0] != "nurses" || c.Origin != "gw-a" || c.Agent != "triage" {
		t.Fatalf("claims %+v, %v", c, err)
	}
	now = now.Add(2 * time.Minute) // past the minute it is valid for, and the leeway
	if _, err := s.Verify(tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("an expired token: %v", err)
	}
	other, _ := NewSigner([]byte(strings.Repeat("x", 32)), func() time.Time { return now })
	tok, _ = other.Sign(Claims{Origin: "gw-a", Subject: "s", Agent: "triage"})
	if _, err := s.Verify(tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("a token signed with another key: %v", err)
	}
	noSubject, _ := s.Sign(Claims{Origin: "gw-a", Agent: "triage"})
	if _, err := s.Verify(noSubject); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("a token without a subject: %v", err)
	}
	if _, err := NewSigner([]byte("short"), nil); err == nil {
		t.Fatal("a short key was accepted")
	}
}

// A member is alive while its heartbeats come; after Missed periods without one it is gone,
// and a member of the same journal is reported on Left.
func TestMembersLeaveWhenHeartbeatsStop(t *testing.T) {
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	f := &Fleet{opts: Options{ID: "self", Missed: 3, Interval: time.Second, Now: func() time.Time { return now }},
		log: discard(), journal: "/agentplane", members: map[string]*Member{}, changed: make(chan struct{}), left: make(chan string, 4)}
	beat := func(id, journal string) {
		data, _ := json.Marshal(Heartbeat{ID: id, Journal: journal, Interval: time.Second, URL: "http://" + id,
			Agents: map[string]Load{"triage": {Ready: 1, Slots: 4, InFlight: 1}}})
		f.heard(&nats.Msg{Subject: "agentplane.fleet.hb." + id, Data: data})
	}
	beat("peer", "/agentplane")
	beat("clinic", "clinic/agentplane")
	if !f.Alive("peer") || len(f.Peers("triage")) != 2 || f.Peers("triage")[0].Agents["triage"].Free() != 3 {
		t.Fatalf("members %+v", f.Members())
	}
	now = now.Add(2 * time.Second)
	f.expire()
	if !f.Alive("peer") {
		t.Fatal("a member was taken for dead after 2 of its 3 periods")
	}
	now = now.Add(2 * time.Second)
	f.expire()
	if f.Alive("peer") || f.Alive("clinic") {
		t.Fatal("members alive 4 s after their last heartbeat")
	}
	select {
	case id := <-f.left:
		if id != "peer" {
			t.Fatalf("left %q", id)
		}
	default:
		t.Fatal("the member of this journal was not reported as left")
	}
	select {
	case id := <-f.left:
		t.Fatalf("a member of another journal (%q) was reported: its tasks are not this journal's", id)
	default:
	}
	beat("bad id with spaces", "/agentplane")
	if len(f.Members()) != 0 {
		t.Fatalf("a malformed heartbeat was taken: %+v", f.Members())
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// FuzzPeerInput feeds what another gateway, or anyone on the NATS system, may send: a heartbeat
// and a fleet token. Neither panics; no token verifies without the key.
func FuzzPeerInput(f *testing.F) {
	hb, _ := json.Marshal(Heartbeat{ID: "gw-a", Journal: "/agentplane", Agents: map[string]Load{"triage": {Ready: 1}}})
	f.Add(hb, "eyJhbGciOiJIUzI1NiJ9.e30.x")
	f.Add([]byte(`{"id":"x","agents":{"a":{"ready":-1,"slots":-5}}}`), "")
	s, _ := NewSigner([]byte(key), nil)
	fl := &Fleet{opts: Options{ID: "self", Missed: 3, Interval: time.Second, Now: time.Now}, log: discard(), journal: "/agentplane",
		members: map[string]*Member{}, changed: make(chan struct{}), left: make(chan string, 1)}
	f.Fuzz(func(t *testing.T, data []byte, token string) {
		fl.heard(&nats.Msg{Subject: "agentplane.fleet.hb.x", Data: data})
		for _, m := range fl.Members() {
			for _, l := range m.Agents {
				if l.Free() < 0 {
					t.Fatalf("negative free slots from %q", data)
				}
			}
		}
		if _, err := s.Verify(token); err == nil {
			t.Fatalf("token %q verified without being signed", token)
		}
	})
}
