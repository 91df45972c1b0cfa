// Package run composes long-running parts. Each part is a Runnable, Start(ctx) error, that runs
// until its context ends or it fails; a Group starts several together, stops them all when one
// of them returns or the caller's context ends, and reports the first failure.
//
// It is not a supervisor: a part that fails is not restarted (internal/supervisor restarts
// agents' processes), and a Group runs once.
package run
