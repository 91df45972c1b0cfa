package cli

import (
	"context"
	"testing"
)

func TestOnForcedExit(t *testing.T) {
	fe := &forcedExit{}
	ctx := context.WithValue(t.Context(), forcedExitKey{}, fe)
	var ran []string
	unA := onForcedExit(ctx, func() { ran = append(ran, "a") })
	unB := onForcedExit(ctx, func() { ran = append(ran, "b") })
	unA()
	fe.run()
	if len(ran) != 1 || ran[0] != "b" {
		t.Fatalf("ran %v, want only the hook still registered", ran)
	}
	unB()
	unB() // twice is harmless
	fe.run()
	if len(ran) != 1 {
		t.Fatalf("ran %v after unregistering every hook", ran)
	}
	// Without SignalContext's context there is nothing to register with.
	onForcedExit(t.Context(), func() { t.Error("ran") })()
}
