package auth

import (
	"errors"
	"testing"

	configv1 "github.com/agentplane/agentplane/api/config/v1alpha1"
)

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"*", "", true},
		{"*", "anything/at:all", true},
		{"triage", "triage", true},
		{"triage", "triage2", false},
		{"agent:*", "agent:triage", true},
		{"agent:*", "agents", false},
		{"spiffe://clinic-a/*", "spiffe://clinic-a/ns/x/sa/y", true},
		{"spiffe://clinic-a/*", "spiffe://clinic-b/ns", false},
		{"*-reader", "ct-reader", true},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "aXbY", false},
		{"a**", "a", true},
		{"", "", true},
		{"", "a", false},
		{"?", "a", false}, // only * is special
	} {
		if got := Glob(tc.p, tc.s); got != tc.want {
			t.Errorf("Glob(%q, %q) = %v, want %v", tc.p, tc.s, got, tc.want)
		}
	}
}

func testAuthorizer(t *testing.T) *Authorizer {
	t.Helper()
	a, err := NewAuthorizer([]configv1.Policy{
		{Name: "clinicians", Groups: []string{"clinicians"}, Agents: []string{"triage", "radiology"}, MaxPriority: configv1.PriorityUrgent},
		{Name: "research", Subjects: []string{"res-*"}, Tenants: []string{"uni"}, Agents: []string{"*"}, Skills: []string{"summarize"}, MaxPriority: configv1.PriorityBatch},
		{Name: "triage-to-radiology", Subjects: []string{"agent:triage"}, Agents: []string{"radiology"}, MaxPriority: configv1.PriorityNormal},
		{Name: "admins", Subjects: []string{"alice"}, Agents: []string{"triage"}, MaxPriority: configv1.PriorityNormal, TenantAdmin: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAllow(t *testing.T) {
	a := testAuthorizer(t)
	clin := &Subject{Name: "bob", Tenant: "clinic-a", Groups: []string{"clinicians"}, Kind: KindJWT}
	res := &Subject{Name: "res-7", Tenant: "uni", Kind: KindAPIKey}
	resElsewhere := &Subject{Name: "res-7", Tenant: "clinic-a", Kind: KindAPIKey}
	triage := &Subject{Name: "agent:triage", Tenant: "clinic-a", Kind: KindAgent}
	nobody := &Subject{Name: "eve", Tenant: "clinic-a", Kind: KindAPIKey}
	for _, tc := range []struct {
		s            *Subject
		agent, skill string
		want         bool
	}{
		{clin, "triage", "", true},
		{clin, "radiology", "ct-read", true},
		{clin, "billing", "", false},
		{res, "triage", "summarize", true},
		{res, "triage", "", false}, // a policy with skills needs the request to name one of them
		{res, "triage", "diagnose", false},
		{resElsewhere, "triage", "summarize", false}, // tenant restriction
		{triage, "radiology", "", true},
		{triage, "triage", "", false},
		{nobody, "triage", "", false},
		{nil, "triage", "", false},
	} {
		err := a.Allow(tc.s, tc.agent, tc.skill)
		if (err == nil) != tc.want {
			t.Errorf("Allow(%+v, %q, %q) = %v, want allowed=%v", tc.s, tc.agent, tc.skill, err, tc.want)
		}
		if err != nil && !errors.Is(err, ErrForbidden) {
			t.Errorf("Allow error %v does not match ErrForbidden", err)
		}
		if err != nil && HTTPStatus(err) != 403 {
			t.Errorf("HTTPStatus(%v) = %d", err, HTTPStatus(err))
		}
	}
}

func TestMaxPriority(t *testing.T) {
	a := testAuthorizer(t)
	clin := &Subject{Name: "alice", Tenant: "clinic-a", Groups: []string{"clinicians"}}
	if p, ok := a.MaxPriority(clin, "triage"); !ok || p != configv1.PriorityUrgent {
		t.Errorf("MaxPriority = %q, %v; want the highest of the covering policies, urgent", p, ok)
	}
	if _, ok := a.MaxPriority(clin, "billing"); ok {
		t.Error("MaxPriority for an agent no policy covers should say so")
	}
	if !PriorityAtMost(configv1.PriorityBatch, configv1.PriorityNormal) || PriorityAtMost(configv1.PriorityUrgent, configv1.PriorityNormal) {
		t.Error("PriorityAtMost ordering is wrong")
	}
}

func TestCanSeeTask(t *testing.T) {
	a := testAuthorizer(t)
	bob := &Subject{Name: "bob", Tenant: "clinic-a"}
	alice := &Subject{Name: "alice", Tenant: "clinic-a"} // tenant admin
	aliceB := &Subject{Name: "alice", Tenant: "clinic-b"}
	for _, tc := range []struct {
		s                 *Subject
		taskSubj, taskTen string
		want              bool
	}{
		{bob, "bob", "clinic-a", true},
		{bob, "carol", "clinic-a", false},
		{bob, "bob", "clinic-b", false}, // same name, other tenant
		{alice, "carol", "clinic-a", true},
		{alice, "carol", "clinic-b", false},
		{aliceB, "carol", "clinic-a", false},
		{nil, "bob", "clinic-a", false},
	} {
		if got := a.CanSeeTask(tc.s, tc.taskSubj, tc.taskTen); got != tc.want {
			t.Errorf("CanSeeTask(%+v, %q, %q) = %v, want %v", tc.s, tc.taskSubj, tc.taskTen, got, tc.want)
		}
	}
}
