package supervisor

import "runtime"

// osThread runs functions on one OS thread, locked to its goroutine for the thread's whole life.
//
// On Linux a replica gets its parent-death signal (see ExecLauncher) when the thread that
// started it exits, not when the supervisor's process does. The Go runtime ends a thread when a
// goroutine locked to it returns, and such a goroutine may be any goroutine that ever ran on a
// pooled thread: a replica started from a pooled thread could be killed at any time. Starting
// every replica from this one thread, which lives until Start has stopped them all, ties their
// lives to the supervisor's.
type osThread struct {
	calls chan func()
	quit  chan struct{} // closed by stop
	done  chan struct{} // closed when the thread's goroutine returns
}

// startOSThread starts the thread. Its owner must call stop.
func startOSThread() *osThread {
	t := &osThread{calls: make(chan func()), quit: make(chan struct{}), done: make(chan struct{})}
	locked := make(chan struct{})
	go t.run(locked)
	<-locked
	return t
}

// run serves calls on a locked thread other than the main one, and closes locked once it has
// one.
func (t *osThread) run(locked chan struct{}) {
	runtime.LockOSThread()
	if onMainThread() {
		// The runtime parks the main thread instead of ending it. Hand over to a goroutine
		// that cannot run here while this one holds the thread, then give the thread back.
		go t.run(locked)
		<-locked
		runtime.UnlockOSThread()
		return
	}
	// Never unlocked: when this goroutine returns, the runtime ends the thread, and any process
	// still running that was started on it gets its parent-death signal.
	defer close(t.done)
	close(locked)
	for {
		select {
		case f := <-t.calls:
			f()
		case <-t.quit:
			return
		}
	}
}

// do runs f on the thread and returns true once it has returned, or returns false without
// running f if the thread is stopping.
func (t *osThread) do(f func()) bool {
	ran := make(chan struct{})
	select {
	case t.calls <- func() { defer close(ran); f() }:
	case <-t.quit:
		return false
	}
	<-ran
	return true
}

// stop ends the thread, after the call of do in progress, if any, has returned.
func (t *osThread) stop() {
	close(t.quit)
	<-t.done
}
