// Package a2a holds what the gateway must understand of the Agent2Agent protocol on the wire:
// the JSON-RPC 2.0 envelope, the method names of A2A v1.0 and v0.3 and what each one does, the
// protocol's error codes, and where a task id sits in requests and results; and the v1.0
// HTTP+JSON routes, each read into the JSON-RPC request it stands for (rest.go).
//
// It is deliberately shallow: the gateway routes and forwards messages, it does not re-encode
// them, so it parses only the envelope and the few fields routing needs. Agents themselves use
// the official A2A Go SDK (github.com/a2aproject/a2a-go/v2).
package a2a
