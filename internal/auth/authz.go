package auth

import (
	"fmt"
	"slices"

	configv1 "github.com/agentplane/agentplane/api/config/v1alpha1"
)

// Authorizer applies policies. Policies only allow: a request is allowed when at least one
// policy covers the subject (by name, by group, and by tenant when the policy names tenants) and
// the agent (and skill, when the policy lists skills). Everything else is forbidden.
type Authorizer struct {
	policies []configv1.Policy
}

// NewAuthorizer returns an authorizer for defaulted, validated policies.
func NewAuthorizer(policies []configv1.Policy) (*Authorizer, error) {
	for i, p := range policies {
		if _, ok := priorityRank[p.MaxPriority]; !ok {
			return nil, fmt.Errorf("auth: policies[%d].maxPriority %q is not urgent, normal or batch", i, p.MaxPriority)
		}
	}
	return &Authorizer{policies: slices.Clone(policies)}, nil
}

var priorityRank = map[configv1.Priority]int{configv1.PriorityBatch: 1, configv1.PriorityNormal: 2, configv1.PriorityUrgent: 3}

// PriorityAtMost reports whether p is no higher than limit.
func PriorityAtMost(p, limit configv1.Priority) bool {
	rp, ok1 := priorityRank[p]
	rl, ok2 := priorityRank[limit]
	return ok1 && ok2 && rp <= rl
}

func covers(p *configv1.Policy, s *Subject) bool {
	if s == nil {
		return false
	}
	if len(p.Tenants) > 0 && !matchAny(p.Tenants, s.Tenant) {
		return false
	}
	if matchAny(p.Subjects, s.Name) {
		return true
	}
	for _, g := range s.Groups {
		if matchAny(p.Groups, g) {
			return true
		}
	}
	return false
}

func matchAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if Glob(p, s) {
			return true
		}
	}
	return false
}

// Allow returns nil when a policy lets s call skill of agent, else an error matching
// ErrForbidden. skill is "" when the request names none; a policy that lists skills then allows
// it only through a "*" pattern. Call it before telling whether the agent exists, so that a
// caller cannot learn agent names it may not call.
func (a *Authorizer) Allow(s *Subject, agent, skill string) error {
	for i := range a.policies {
		p := &a.policies[i]
		if covers(p, s) && matchAny(p.Agents, agent) && (len(p.Skills) == 0 || matchAny(p.Skills, skill)) {
			return nil
		}
	}
	e := &ForbiddenError{Agent: agent, Skill: skill}
	if s != nil {
		e.Subject, e.Tenant = s.Name, s.Tenant
	}
	return e
}

// CanCall reports whether s may call agent with at least some skill; for listing agents.
func (a *Authorizer) CanCall(s *Subject, agent string) bool {
	for i := range a.policies {
		p := &a.policies[i]
		if covers(p, s) && matchAny(p.Agents, agent) {
			return true
		}
	}
	return false
}

// MaxPriority returns the highest priority any policy covering s and agent grants, and false when
// none covers them. A request asking for more is lowered to it (or refused; the gateway chooses).
func (a *Authorizer) MaxPriority(s *Subject, agent string) (configv1.Priority, bool) {
	best, found := configv1.Priority(""), false
	for i := range a.policies {
		p := &a.policies[i]
		if covers(p, s) && matchAny(p.Agents, agent) {
			if !found || priorityRank[p.MaxPriority] > priorityRank[best] {
				best, found = p.MaxPriority, true
			}
		}
	}
	return best, found
}

// IsTenantAdmin reports whether a policy with tenantAdmin covers s.
func (a *Authorizer) IsTenantAdmin(s *Subject) bool {
	if s == nil || s.Tenant == "" {
		return false
	}
	for i := range a.policies {
		if p := &a.policies[i]; p.TenantAdmin && covers(p, s) {
			return true
		}
	}
	return false
}

// CanSeeTask reports whether s may read, cancel or subscribe to a task created by taskSubject
// in taskTenant: its own tasks (same name and tenant), and as a tenant admin every task of its
// tenant. A task s may not see must be answered exactly like a task that does not exist.
func (a *Authorizer) CanSeeTask(s *Subject, taskSubject, taskTenant string) bool {
	if s == nil {
		return false
	}
	if s.Tenant != taskTenant {
		return false
	}
	return s.Name == taskSubject || a.IsTenantAdmin(s)
}

// Glob reports whether s matches pattern, where "*" matches any run of characters (including
// none, and including "/") and every other character matches itself. It runs in O(len(pattern)
// × len(s)) at worst, without recursion.
func Glob(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
