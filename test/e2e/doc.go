// Package e2e tests the built agentplane binary end to end: real processes, real sockets, real
// signals. TestMain builds the binary once (with the race detector) and every test runs
// `agentplane up` in its own data directory on a free loopback port.
package e2e
