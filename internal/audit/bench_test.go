package audit

import (
	"path/filepath"
	"testing"
)

func benchWrite(b *testing.B, fsync string, key []byte, parallel bool) {
	w, err := Open(Options{Path: filepath.Join(b.TempDir(), "audit.jsonl"), Fsync: fsync, HMACKey: key})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	rec := call(1)
	if parallel {
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := w.Write(b.Context(), rec); err != nil {
					b.Error(err)
					return
				}
			}
		})
		return
	}
	for b.Loop() {
		if err := w.Write(b.Context(), rec); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWriteFsyncAlways(b *testing.B)         { benchWrite(b, FsyncAlways, nil, false) }
func BenchmarkWriteFsyncAlwaysParallel(b *testing.B) { benchWrite(b, FsyncAlways, nil, true) }
func BenchmarkWriteFsyncInterval(b *testing.B)       { benchWrite(b, FsyncInterval, nil, false) }
func BenchmarkWriteFsyncNever(b *testing.B)          { benchWrite(b, FsyncNever, nil, false) }
func BenchmarkWriteFsyncNeverHMAC(b *testing.B)      { benchWrite(b, FsyncNever, testKey, false) }

func BenchmarkVerify(b *testing.B) {
	dir := b.TempDir()
	w, _ := Open(Options{Path: filepath.Join(dir, "audit.jsonl"), Fsync: FsyncNever})
	for range 10000 {
		_ = w.Write(b.Context(), call(1))
	}
	w.Close()
	files, _ := filepath.Glob(filepath.Join(dir, "audit-*.jsonl"))
	b.ResetTimer()
	for b.Loop() {
		if _, err := Verify(files...); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/10000, "ns/record")
}
