// Package filter holds the balancer's filters: the stages that drop replicas before scoring.
//
// Hard filters (Residency, Ready, Capacity) leave nothing when nothing qualifies, and the policy
// refuses the task with the filter's reason. Preferences (NotEjected, PreferSite) narrow the set
// only when something is left, so they never cause a refusal. The order in a policy matters:
// hard rules first, then health, then capacity, then preferences, so that a preference never
// overrides a rule and a spill to another site happens only when the local replicas are full.
package filter
