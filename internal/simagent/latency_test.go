package simagent

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseLatency(t *testing.T) {
	tests := []struct {
		in      string
		want    string // String() of the result
		wantErr string
	}{
		{in: "0", want: "0"},
		{in: "0s", want: "0"},
		{in: "200ms", want: "200ms"},
		{in: " 1.5s ", want: "1.5s"},
		{in: "lognormal:2s,20s", want: "lognormal:2s,20s"},
		{in: "lognormal: 100ms , 1s", want: "lognormal:100ms,1s"},
		{in: "lognormal:1s,1s", want: "lognormal:1s,1s"},
		{in: "", wantErr: "empty"},
		{in: "fast", wantErr: "invalid duration"},
		{in: "200", wantErr: "invalid duration"},
		{in: "-1s", wantErr: "negative"},
		{in: "lognormal:2s", wantErr: "two durations"},
		{in: "lognormal:", wantErr: "two durations"},
		{in: "lognormal:,1s", wantErr: "median: empty"},
		{in: "lognormal:2s,1s", wantErr: "must be >= median"},
		{in: "lognormal:0,1s", wantErr: "median must be > 0"},
		{in: "lognormal:-1s,1s", wantErr: "negative"},
		{in: "lognormal:1s,x", wantErr: "p99: invalid duration"},
		{in: "uniform:1s,2s", wantErr: "unknown distribution"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			l, err := ParseLatency(tt.in)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, l.String())
		})
	}
}

func TestLatencySample(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	fixed, err := ParseLatency("250ms")
	require.NoError(t, err)
	assert.Equal(t, 250*time.Millisecond, fixed.Sample(r))

	ln, err := ParseLatency("lognormal:100ms,1s")
	require.NoError(t, err)
	const n = 20000
	samples := make([]time.Duration, n)
	for i := range samples {
		samples[i] = ln.Sample(r)
		require.GreaterOrEqual(t, samples[i], time.Duration(0))
		require.LessOrEqual(t, samples[i], 10*time.Second) // capped at 10×p99
	}
	slices.Sort(samples)
	median, p99 := samples[n/2], samples[n*99/100]
	assert.InDelta(t, float64(100*time.Millisecond), float64(median), float64(10*time.Millisecond), "median %v", median)
	assert.InDelta(t, float64(time.Second), float64(p99), float64(200*time.Millisecond), "p99 %v", p99)

	// p99 == median degenerates to a fixed latency.
	same, err := ParseLatency("lognormal:1s,1s")
	require.NoError(t, err)
	assert.Equal(t, time.Second, same.Sample(r))
}

func TestLatencyFlagValue(t *testing.T) {
	var l Latency
	v := latencyValue{&l}
	assert.Equal(t, "0", v.String())
	assert.Equal(t, "latency", v.Type())
	require.NoError(t, v.Set("lognormal:2s,20s"))
	assert.Equal(t, "lognormal:2s,20s", v.String())
	err := v.Set("lognormal:20s,2s")
	require.Error(t, err)
	assert.Equal(t, "lognormal:2s,20s", v.String(), "failed Set must not change the value")
}

func FuzzParseLatency(f *testing.F) {
	for _, s := range []string{"0", "200ms", "1h2m3.5s", "lognormal:2s,20s", "lognormal:1ns,1ns", "-1s", "lognormal:3s,1s", "lognormal:,", "2562047h47m16.854775807s", "lognormal:1s,2562047h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLatency(s)
		if err != nil {
			if l != nil {
				t.Fatalf("ParseLatency(%q) returned a value with error %v", s, err)
			}
			return
		}
		str := l.String()
		again, err := ParseLatency(str)
		if err != nil {
			t.Fatalf("ParseLatency(%q).String() = %q does not parse: %v", s, str, err)
		}
		if !reflect.DeepEqual(l, again) {
			t.Fatalf("round trip of %q via %q: %#v != %#v", s, str, l, again)
		}
		if strings.TrimSpace(str) != str {
			t.Fatalf("String() %q has surrounding space", str)
		}
		d := l.Sample(rand.New(rand.NewPCG(3, 4)))
		if d < 0 {
			t.Fatalf("bad sample %v", d)
		}
	})
}
