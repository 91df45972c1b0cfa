// Package policies builds agentplane's named balancing policies from the filters, scorers and
// pickers of the balancer packages, in one explicit Register function (no init, no global
// registry): "p2c" for stateless agents and "chash" for stateful ones.
package policies
