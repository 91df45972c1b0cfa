package health

import (
	"testing"
	"time"
)

func TestEjectorBackoff(t *testing.T) {
	e := NewEjector(time.Second, 5*time.Second)
	t0 := time.Unix(1000, 0)
	now := t0
	for i, want := range []time.Duration{1, 2, 4, 5, 5} {
		if got := e.Eject("a", now); got != want*time.Second {
			t.Fatalf("ejection %d lasted %v, want %v", i+1, got, want*time.Second)
		}
		// Failures while already ejected (requests that were in flight together) are one event.
		if got := e.Eject("a", now.Add(time.Millisecond)); got != want*time.Second-time.Millisecond {
			t.Fatalf("a second failure during ejection %d changed it to %v", i+1, got)
		}
		if !e.Ejected("a", now.Add(want*time.Second-time.Millisecond)) {
			t.Fatal("not ejected before the time is up")
		}
		now = now.Add(want * time.Second)
		if e.Ejected("a", now) {
			t.Fatal("still ejected after the time is up")
		}
	}
	if e.Ejected("b", t0) {
		t.Fatal("an unknown key is ejected")
	}
	e.Succeeded("a", now.Add(-time.Millisecond)) // a request from before the last ejection ended
	if !e.Ejected("a", now.Add(-time.Millisecond)) {
		t.Fatal("a success during the ejection readmitted the replica")
	}
	e.Succeeded("a", now)
	if got := e.Eject("a", now); got != time.Second {
		t.Fatalf("after a success the backoff did not start over: %v", got)
	}
	e.Readmit("a")
	if e.Ejected("a", now) {
		t.Fatal("Readmit did not readmit")
	}
	e.Eject("a", now)
	if keys := e.EjectedKeys(now); len(keys) != 1 || keys[0] != "a" {
		t.Fatalf("EjectedKeys = %v", keys)
	}
	e.Retain(func(string) bool { return false })
	if e.Ejected("a", now) {
		t.Fatal("Retain did not forget")
	}
}

func TestEjectorDefaults(t *testing.T) {
	e := NewEjector(0, 0)
	if got := e.Eject("a", time.Unix(0, 0)); got != DefaultBaseEjection {
		t.Fatalf("default base = %v", got)
	}
}

func TestFailEjectsAfterConsecutiveFailures(t *testing.T) {
	e := NewEjector(time.Second, 10*time.Second)
	now := time.Unix(0, 0)
	if d := e.Fail("a", now, 2); d != 0 || e.Ejected("a", now) {
		t.Fatal("one failure ejected the replica")
	}
	e.Succeeded("a", now)
	if d := e.Fail("a", now, 2); d != 0 {
		t.Fatal("a success did not reset the count")
	}
	if d := e.Fail("a", now, 2); d != time.Second || !e.Ejected("a", now) {
		t.Fatalf("two failures in a row: ejected for %v", d)
	}
}
