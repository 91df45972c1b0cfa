package supervisor

import (
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	custom := Backoff{Initial: 50 * time.Millisecond, Max: 300 * time.Millisecond}
	for _, tc := range []struct {
		b       Backoff
		crashes int
		want    time.Duration
	}{
		{Backoff{}, -1, 0},
		{Backoff{}, 0, 0},
		{Backoff{}, 1, time.Second},
		{Backoff{}, 2, 2 * time.Second},
		{Backoff{}, 3, 4 * time.Second},
		{Backoff{}, 9, 256 * time.Second},
		{Backoff{}, 10, 5 * time.Minute},
		{Backoff{}, 1000, 5 * time.Minute},
		{custom, 1, 50 * time.Millisecond},
		{custom, 3, 200 * time.Millisecond},
		{custom, 4, 300 * time.Millisecond},
		{custom, 5, 300 * time.Millisecond},
		{Backoff{Initial: time.Minute, Max: time.Second}, 3, time.Minute}, // Max below Initial
	} {
		if got := tc.b.Delay(tc.crashes); got != tc.want {
			t.Errorf("%+v.Delay(%d) = %v, want %v", tc.b, tc.crashes, got, tc.want)
		}
	}
}

func TestBackoffCrashes(t *testing.T) {
	b := Backoff{ResetAfter: time.Minute}
	for _, tc := range []struct {
		before   int
		readyFor time.Duration
		want     int
	}{
		{0, 0, 1},
		{1, 0, 2},
		{5, 59 * time.Second, 6},
		{5, time.Minute, 1},
		{5, time.Hour, 1},
	} {
		if got := b.Crashes(tc.before, tc.readyFor); got != tc.want {
			t.Errorf("Crashes(%d, %v) = %d, want %d", tc.before, tc.readyFor, got, tc.want)
		}
	}
	if got := (Backoff{}).Crashes(3, 9*time.Minute); got != 4 {
		t.Errorf("default ResetAfter: Crashes(3, 9m) = %d, want 4", got)
	}
	if got := (Backoff{}).Crashes(3, 10*time.Minute); got != 1 {
		t.Errorf("default ResetAfter: Crashes(3, 10m) = %d, want 1", got)
	}
}
