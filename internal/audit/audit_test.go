package audit

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var testKey = []byte("0123456789abcdef0123456789abcdef-test-key")

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

func openTest(t *testing.T, dir string, o Options) *Writer {
	t.Helper()
	o.Path = filepath.Join(dir, "audit.jsonl")
	if o.Now == nil {
		o.Now = (&fakeClock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}).Now
	}
	w, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func call(i int) Record {
	return Record{Subject: "dr-who", Tenant: "clinic-a", Agent: "triage", Method: "SendMessage",
		TaskID: fmt.Sprintf("task-%04d", i), Outcome: "ok", HTTPStatus: 200, LatencyMs: int64(i), Replica: "triage-0", Site: "clinic-a"}
}

// writeLog writes n records and returns the log's files in order.
func writeLog(t *testing.T, dir string, n int, o Options) []string {
	t.Helper()
	w := openTest(t, dir, o)
	for i := range n {
		if err := w.Write(t.Context(), call(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "audit-*.jsonl"))
	return files
}

func lines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(b, []byte("\n"))[:bytes.Count(b, []byte("\n"))]
}

func writeLines(t *testing.T, path string, ls [][]byte) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Join(ls, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

func wantProblem(t *testing.T, err error, path string, line int, reason string) {
	t.Helper()
	var p *Problem
	if !errors.As(err, &p) || !errors.Is(err, ErrBroken) {
		t.Fatalf("err = %v, want a *Problem", err)
	}
	if p.Path != path || p.Line != line || !strings.Contains(p.Reason, reason) {
		t.Fatalf("problem = %v\nwant %s:%d %q", err, path, line, reason)
	}
}

func TestWriteAndVerify(t *testing.T) {
	dir := t.TempDir()
	files := writeLog(t, dir, 20, Options{})
	if len(files) != 1 || filepath.Base(files[0]) != "audit-00000000000000000001.jsonl" {
		t.Fatalf("files = %v", files)
	}
	rep, err := Verify(files...)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 21 || rep.FirstSeq != 1 || rep.LastSeq != 21 || rep.Keyed || len(rep.LastHash) != 64 {
		t.Fatalf("report = %+v", rep)
	}
	ls := lines(t, files[0])
	// The record holds what was asked, in the documented shape, and nothing else.
	want := `{"seq":3,"time":"2026-05-01T12:00:00.003Z","subject":"dr-who","tenant":"clinic-a","agent":"triage","method":"SendMessage","taskId":"task-0001","outcome":"ok","httpStatus":200,"latencyMs":1,"replica":"triage-0","site":"clinic-a","prevHash":"`
	if !bytes.HasPrefix(ls[2], []byte(want)) {
		t.Fatalf("line 3 = %s\nwant prefix %s", ls[2], want)
	}
}

func TestTampering(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, files []string)
		file   int // index into files of the problem
		line   int
		reason string
	}{
		{"edit a field", func(t *testing.T, f []string) {
			ls := lines(t, f[0])
			ls[5] = bytes.Replace(ls[5], []byte(`"outcome":"ok"`), []byte(`"outcome":"no"`), 1)
			writeLines(t, f[0], ls)
		}, 0, 6, "hash does not match"},
		{"edit whitespace", func(t *testing.T, f []string) {
			ls := lines(t, f[0])
			ls[5] = bytes.Replace(ls[5], []byte(`,"outcome"`), []byte(`, "outcome"`), 1)
			writeLines(t, f[0], ls)
		}, 0, 6, "canonical"},
		{"add a field", func(t *testing.T, f []string) {
			ls := lines(t, f[0])
			ls[5] = bytes.Replace(ls[5], []byte(`{"seq"`), []byte(`{"note":"x","seq"`), 1)
			writeLines(t, f[0], ls)
		}, 0, 6, "not a record"},
		{"duplicate a key", func(t *testing.T, f []string) {
			ls := lines(t, f[0])
			ls[5] = bytes.Replace(ls[5], []byte(`"outcome":"ok"`), []byte(`"outcome":"no","outcome":"ok"`), 1)
			writeLines(t, f[0], ls)
		}, 0, 6, "canonical"},
		{"delete a line", func(t *testing.T, f []string) {
			ls := lines(t, f[0])
			writeLines(t, f[0], append(ls[:4:4], ls[5:]...))
		}, 0, 5, "expected seq 5 after 4"},
		{"swap two lines", func(t *testing.T, f []string) {
			ls := lines(t, f[0])
			ls[3], ls[4] = ls[4], ls[3]
			writeLines(t, f[0], ls)
		}, 0, 4, "expected seq 4 after 3"},
		{"duplicate a line", func(t *testing.T, f []string) {
			ls := lines(t, f[0])
			writeLines(t, f[0], append(ls[:5:5], ls[4:]...))
		}, 0, 6, "expected seq 6 after 5"},
		{"truncate mid-line", func(t *testing.T, f []string) {
			b, _ := os.ReadFile(f[0])
			_ = os.WriteFile(f[0], b[:len(b)-10], 0o600)
		}, 0, 0, "incomplete"},
		{"cut the file's beginning", func(t *testing.T, f []string) {
			ls := lines(t, f[0])
			writeLines(t, f[0], ls[3:])
		}, 0, 1, "not a file header"},
		{"delete a rotated file in the middle", func(t *testing.T, f []string) {
			_ = os.Remove(f[1])
		}, 1, 1, "a file is missing"},
		{"truncate a rotated file", func(t *testing.T, f []string) {
			ls := lines(t, f[1])
			writeLines(t, f[1], ls[:len(ls)-2])
		}, 2, 1, "expected seq"},
		{"header inserted mid-file", func(t *testing.T, f []string) {
			ls := lines(t, f[1])
			writeLines(t, f[1], append(append(ls[:3:3], lines(t, f[2])[0]), ls[3:]...))
		}, 1, 4, `"file" record in the middle`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			// Small files: about 12 records each, so that 40 records span several files.
			files := writeLog(t, dir, 40, Options{MaxFileBytes: 4096})
			if len(files) < 3 {
				t.Fatalf("want at least 3 files, got %d", len(files))
			}
			if _, err := Verify(files...); err != nil {
				t.Fatalf("before tampering: %v", err)
			}
			want := files[tc.file]
			tc.tamper(t, files)
			var present []string
			for _, f := range files {
				if _, err := os.Stat(f); err == nil {
					present = append(present, f)
				}
			}
			_, err := Verify(present...)
			line := tc.line
			if line == 0 { // the last line of the file, whatever its number
				line = len(lines(t, want)) + 1
			}
			if tc.name == "delete a rotated file in the middle" {
				want = files[2]
			}
			wantProblem(t, err, want, line, tc.reason)
		})
	}
}

// forge inserts a record after line at (0-based) and recomputes every later seq, prevHash and hash
// with plain SHA-256: what someone who can edit the file, but does not hold the HMAC key, can do.
func forge(t *testing.T, path string, at int) {
	t.Helper()
	ls := lines(t, path)
	var out [][]byte
	var prev string
	var seq uint64
	for i, l := range ls {
		rec, _, err := decodeLine(bytes.TrimSuffix(l, []byte("\n")))
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			rec.Seq, rec.PrevHash = seq+1, prev
		}
		line, _ := encodeLine(rec, nil)
		out = append(out, line)
		prev, seq = rec.Hash, rec.Seq
		if i == at {
			fake := call(999)
			fake.Subject, fake.Seq, fake.PrevHash, fake.Time = "nobody", seq+1, prev, rec.Time
			line, _ := encodeLine(&fake, nil)
			out = append(out, line)
			prev, seq = fake.Hash, fake.Seq
		}
	}
	writeLines(t, path, out)
}

func TestForgedChainCaughtOnlyWithHMAC(t *testing.T) {
	plain := t.TempDir()
	files := writeLog(t, plain, 10, Options{})
	forge(t, files[0], 4)
	rep, err := Verify(files...)
	if err != nil {
		t.Fatalf("a plain chain rewritten after an insertion: %v", err)
	}
	if rep.Records != 12 {
		t.Fatalf("records = %d; the forged record went unnoticed, as documented", rep.Records)
	}

	keyed := t.TempDir()
	files = writeLog(t, keyed, 10, Options{HMACKey: testKey})
	if rep, err := VerifyKeyed(testKey, files...); err != nil || !rep.Keyed {
		t.Fatalf("keyed chain: %+v, %v", rep, err)
	}
	// The forger rewrites the chain with plain hashes; the file header still says it is keyed.
	forge(t, files[0], 4)
	_, err = VerifyKeyed(testKey, files...)
	wantProblem(t, err, files[0], 1, "hash does not match")
	// Or rewrites the header too, to claim a plain chain: a key was given, so that is refused.
	ls := lines(t, files[0])
	h, _, _ := decodeLine(bytes.TrimSuffix(ls[0], []byte("\n")))
	h.Alg = AlgSHA256
	ls[0], _ = encodeLine(h, nil)
	writeLines(t, files[0], ls)
	forge(t, files[0], 4)
	_, err = VerifyKeyed(testKey, files...)
	wantProblem(t, err, files[0], 1, "no file is HMAC-keyed")
	// Without the key a keyed chain cannot be checked at all.
	files = writeLog(t, t.TempDir(), 3, Options{HMACKey: testKey})
	_, err = Verify(files...)
	wantProblem(t, err, files[0], 1, "give its key")
	// With a wrong key nothing verifies.
	_, err = VerifyKeyed([]byte("another-key-another-key-another-key"), files...)
	wantProblem(t, err, files[0], 1, "hash does not match")
}

func TestRotationKeepsTheChain(t *testing.T) {
	dir := t.TempDir()
	files := writeLog(t, dir, 100, Options{MaxFileBytes: 4096, HMACKey: testKey})
	if len(files) < 5 {
		t.Fatalf("files = %d", len(files))
	}
	rep, err := VerifyKeyed(testKey, files...)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 100+len(files) || len(rep.Files) != len(files) {
		t.Fatalf("report = %+v", rep)
	}
	for i, f := range files {
		st, _ := os.Stat(f)
		if st.Size() > 4096 {
			t.Errorf("%s is %d bytes, over MaxFileBytes", f, st.Size())
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, st.Mode().Perm())
		}
		h, _ := readHeader(f)
		if i > 0 && h.PrevFile != filepath.Base(files[i-1]) {
			t.Errorf("%s header prevFile = %q", f, h.PrevFile)
		}
	}
	// Given in any order, and renamed: still one chain.
	for i, f := range files {
		_ = os.Rename(f, filepath.Join(dir, fmt.Sprintf("archived-%d.log", len(files)-i)))
	}
	renamed, _ := filepath.Glob(filepath.Join(dir, "archived-*.log"))
	if _, err := VerifyKeyed(testKey, renamed...); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyTail(t *testing.T) {
	dir := t.TempDir()
	files := writeLog(t, dir, 60, Options{MaxFileBytes: 4096})
	rep, err := Verify(files[2:]...)
	if err != nil {
		t.Fatal(err)
	}
	if rep.StartsAfter != filepath.Base(files[1]) || rep.FirstSeq == 1 {
		t.Fatalf("report = %+v; want it to start after %s", rep, filepath.Base(files[1]))
	}
}

func TestResume(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 5, Options{HMACKey: testKey})
	// A crash tore the last write: it was never acknowledged, so Open cuts it off.
	files, _ := filepath.Glob(filepath.Join(dir, "audit-*.jsonl"))
	f, _ := os.OpenFile(files[0], os.O_WRONLY|os.O_APPEND, 0)
	_, _ = f.WriteString(`{"seq":7,"time":"2026-`)
	f.Close()
	w := openTest(t, dir, Options{HMACKey: testKey})
	if seq, _ := w.Head(); seq != 6 {
		t.Fatalf("Head seq = %d, want 6", seq)
	}
	for i := range 5 {
		if err := w.Write(t.Context(), call(100+i)); err != nil {
			t.Fatal(err)
		}
	}
	seq, hash := w.Head()
	w.Close()
	rep, err := VerifyKeyed(testKey, files...)
	if err != nil {
		t.Fatal(err)
	}
	if rep.LastSeq != seq || rep.LastHash != hash || rep.Records != 11 {
		t.Fatalf("report = %+v, head %d %s", rep, seq, hash)
	}
	// A keyed log is never continued without its key, nor with another key.
	if _, err := Open(Options{Path: filepath.Join(dir, "audit.jsonl")}); err == nil {
		t.Fatal("Open continued a keyed log without the key")
	}
	if _, err := Open(Options{Path: filepath.Join(dir, "audit.jsonl"), HMACKey: []byte("a-different-key-a-different-key-0000")}); err == nil {
		t.Fatal("Open continued a keyed log with another key")
	}
}

func TestUpgradeToHMAC(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 5, Options{})
	files := writeLog(t, dir, 5, Options{HMACKey: testKey})
	if len(files) != 2 {
		t.Fatalf("files = %v; turning HMAC on should start a new file", files)
	}
	rep, err := VerifyKeyed(testKey, files...)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Keyed {
		t.Error("Keyed should be false while plain files are part of the chain")
	}
	// Editing the plain part is still caught: the keyed header holds its last hash.
	forge(t, files[0], 2)
	_, err = VerifyKeyed(testKey, files...)
	wantProblem(t, err, files[1], 1, "expected seq")
}

func TestConcurrentWrites(t *testing.T) {
	for _, policy := range []string{FsyncAlways, FsyncInterval, FsyncNever} {
		t.Run(policy, func(t *testing.T) {
			dir := t.TempDir()
			w := openTest(t, dir, Options{Fsync: policy, FsyncInterval: time.Millisecond, MaxFileBytes: 16 << 10, Now: time.Now})
			var wg sync.WaitGroup
			for g := range 16 {
				wg.Go(func() {
					for i := range 50 {
						if err := w.Write(t.Context(), call(g*1000+i)); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if err := w.Write(t.Context(), call(0)); !errors.Is(err, ErrClosed) {
				t.Fatalf("Write after Close = %v", err)
			}
			files, _ := filepath.Glob(filepath.Join(dir, "audit-*.jsonl"))
			rep, err := Verify(files...)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Records-len(files) != 800 {
				t.Fatalf("records = %d in %d files, want 800 calls", rep.Records, len(files))
			}
		})
	}
}

func TestSanitize(t *testing.T) {
	dir := t.TempDir()
	w := openTest(t, dir, Options{})
	r := call(1)
	r.Subject = strings.Repeat("é", 300) // 600 bytes
	r.Method = "bad\xffutf8\n{\"seq\":1}"
	if err := w.Write(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	w.Close()
	files, _ := filepath.Glob(filepath.Join(dir, "audit-*.jsonl"))
	if _, err := Verify(files...); err != nil {
		t.Fatal(err)
	}
	if n := len(lines(t, files[0])); n != 2 {
		t.Fatalf("lines = %d; a field must not be able to break a line", n)
	}
}

func TestRecentListsNewestCallsFirst(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(Options{Path: filepath.Join(dir, "audit.jsonl"), MaxFileBytes: 600})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 7 {
		if err := w.Write(t.Context(), Record{Subject: "s", Agent: "triage", Method: "SendMessage", TaskID: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := w.Recent(t.Context(), 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 5 || recs[0].TaskID != "6" || recs[4].TaskID != "2" {
		t.Fatalf("Recent(5) = %+v", recs)
	}
}

func TestRecentReadsOnlyTheTailOfALongLog(t *testing.T) {
	w, err := Open(Options{Path: filepath.Join(t.TempDir(), "audit.jsonl")})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 500 {
		if err := w.Write(t.Context(), Record{Subject: "s", Agent: "triage", TaskID: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := w.Recent(t.Context(), 3)
	if err != nil || len(recs) != 3 || recs[0].TaskID != "499" || recs[2].TaskID != "497" {
		t.Fatalf("Recent(3) = %+v, %v", recs, err)
	}
}
