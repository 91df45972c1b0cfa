// Package chash is the balancer's picker for stateful agents: consistent hashing with bounded
// loads on the A2A contextId, so a conversation stays on the replica that holds its memory
// while that replica is up and not overloaded.
package chash
