package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	configv1 "github.com/agentplane/agentplane/api/config/v1alpha1"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// advance moves the clock on by d.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// checkpointedLog is a keyed log of three files or more, with a checkpoint taken every 10 calls (one
// "minute" apart) and one by Close, and the checkpoints file outside the log's directory.
type checkpointedLog struct {
	dir     string // the log's directory
	cpPath  string
	clock   *fakeClock
	records int
}

func writeCheckpointedLog(t *testing.T) *checkpointedLog {
	t.Helper()
	root := t.TempDir()
	l := &checkpointedLog{dir: filepath.Join(root, "log"), cpPath: filepath.Join(root, "elsewhere", "checkpoints.jsonl"),
		clock: &fakeClock{t: t0}, records: 33}
	w, err := Open(Options{Path: filepath.Join(l.dir, "audit.jsonl"), MaxFileBytes: 4096, HMACKey: testKey, Now: l.clock.Now,
		Checkpoints: &CheckpointOptions{Path: l.cpPath, Interval: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range l.records {
		if err := w.Write(t.Context(), call(i)); err != nil {
			t.Fatal(err)
		}
		if i%10 == 9 {
			l.clock.advance(time.Minute)
			if err := w.Checkpoint(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	l.clock.advance(time.Minute)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if files := l.files(t); len(files) < 3 {
		t.Fatalf("%d log files, want at least 3", len(files))
	}
	return l
}

func (l *checkpointedLog) files(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(l.dir, "audit-*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	return files
}

// cutAfter removes every record after seq, and files left with none.
func (l *checkpointedLog) cutAfter(t *testing.T, seq uint64) {
	t.Helper()
	for _, f := range l.files(t) {
		var keep [][]byte
		for _, line := range lines(t, f) {
			var r Record
			if err := json.Unmarshal(line, &r); err != nil {
				t.Fatal(err)
			}
			if r.Seq <= seq {
				keep = append(keep, line)
			}
		}
		if len(keep) == 0 {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
			continue
		}
		writeLines(t, f, keep)
	}
}

func (l *checkpointedLog) checkpoints(t *testing.T) []Checkpoint {
	t.Helper()
	cps, err := ReadCheckpoints(l.cpPath, testKey)
	if err != nil {
		t.Fatal(err)
	}
	return cps
}

// TestCheckpointTamperCases tampers with a log and its checkpoints one way at a time, and checks
// which tampering audit verify catches with the checkpoints and which without.
func TestCheckpointTamperCases(t *testing.T) {
	cases := []struct {
		name             string
		tamper           func(t *testing.T, l *checkpointedLog)
		without, with    bool   // detected
		reasonWithCheckp string // part of the problem reported with checkpoints
	}{
		{
			name: "delete the last record",
			tamper: func(t *testing.T, l *checkpointedLog) {
				newest := last(l.files(t))
				ls := lines(t, newest)
				writeLines(t, newest, ls[:len(ls)-1])
			},
			with: true, reasonWithCheckp: "records were cut off the end",
		},
		{
			name: "delete the last 5 records",
			tamper: func(t *testing.T, l *checkpointedLog) {
				newest := last(l.files(t))
				ls := lines(t, newest)
				writeLines(t, newest, ls[:len(ls)-5])
			},
			with: true, reasonWithCheckp: "records were cut off the end",
		},
		{
			name:   "delete the newest file",
			tamper: func(t *testing.T, l *checkpointedLog) { mustRemove(t, last(l.files(t))) },
			with:   true, reasonWithCheckp: "or the newest files deleted",
		},
		{
			name: "delete the two newest files",
			tamper: func(t *testing.T, l *checkpointedLog) {
				files := l.files(t)
				mustRemove(t, files[len(files)-2])
				mustRemove(t, files[len(files)-1])
			},
			with: true, reasonWithCheckp: "or the newest files deleted",
		},
		{
			name:    "modify a record",
			tamper:  func(t *testing.T, l *checkpointedLog) { replaceIn(t, l.files(t)[1], 3, `"dr-who"`, `"dr-evil"`) },
			without: true, with: true, reasonWithCheckp: "it was edited",
		},
		{
			name:   "modify a checkpoint's seq",
			tamper: func(t *testing.T, l *checkpointedLog) { replaceIn(t, l.cpPath, 2, `{"seq":`, `{"seq":1`) },
			with:   true, reasonWithCheckp: "the signature does not match",
		},
		{
			name: "forge a checkpoint with another key",
			tamper: func(t *testing.T, l *checkpointedLog) {
				ls := lines(t, l.cpPath)
				c, _ := decodeCheckpoint(bytes.TrimSuffix(ls[3], []byte("\n")), testKey)
				c.Seq = 1000
				forged, err := c.sign([]byte("another key, 32 bytes or longer......"))
				if err != nil {
					t.Fatal(err)
				}
				writeLines(t, l.cpPath, append(ls[:3], forged))
			},
			with: true, reasonWithCheckp: "the signature does not match",
		},
		{
			name: "remove a checkpoint line from the middle",
			tamper: func(t *testing.T, l *checkpointedLog) {
				ls := lines(t, l.cpPath)
				writeLines(t, l.cpPath, slices.Delete(ls, 1, 2))
			},
			with: true, reasonWithCheckp: "checkpoints were removed or reordered",
		},
		{
			name: "remove the first checkpoint line",
			tamper: func(t *testing.T, l *checkpointedLog) {
				writeLines(t, l.cpPath, lines(t, l.cpPath)[1:])
			},
			with: true, reasonWithCheckp: "checkpoints before it were removed",
		},
		{
			name:   "empty the checkpoints file",
			tamper: func(t *testing.T, l *checkpointedLog) { writeLines(t, l.cpPath, nil) },
			with:   true, reasonWithCheckp: "no checkpoints",
		},
		{
			// The window that remains: records written after the newest checkpoint that is left.
			// This is also what a crash leaves uncovered, so it cannot be told apart.
			name: "delete the records after a checkpoint and the checkpoint lines after it",
			tamper: func(t *testing.T, l *checkpointedLog) {
				cps := l.checkpoints(t)
				l.cutAfter(t, cps[len(cps)-2].Seq)
				ls := lines(t, l.cpPath)
				writeLines(t, l.cpPath, ls[:len(ls)-1])
			},
		},
	}
	detectedWith, detectedWithout := 0, 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := writeCheckpointedLog(t)
			if _, _, err := verifyWithCheckpoints(l); err != nil {
				t.Fatalf("before tampering: %v", err)
			}
			tc.tamper(t, l)

			_, errWithout := VerifyKeyed(testKey, l.files(t)...)
			cr, _, errWith := verifyWithCheckpoints(l)
			if got := errWithout != nil; got != tc.without {
				t.Errorf("without checkpoints: detected %v, want %v (%v)", got, tc.without, errWithout)
			}
			if got := errWith != nil; got != tc.with {
				t.Errorf("with checkpoints: detected %v, want %v (%v)", got, tc.with, errWith)
			}
			if errWith != nil {
				if !errors.Is(errWith, ErrBroken) {
					t.Errorf("with checkpoints: %v does not match ErrBroken", errWith)
				}
				if !strings.Contains(errWith.Error(), tc.reasonWithCheckp) {
					t.Errorf("with checkpoints: %q does not say %q", errWith, tc.reasonWithCheckp)
				}
				detectedWith++
			} else {
				t.Logf("not detected with checkpoints: what is left agrees up to the newest checkpoint left, seq %d", cr.Newest.Seq)
			}
			if errWithout != nil {
				detectedWithout++
			}
		})
	}
	t.Logf("audit tamper cases: %d, detected with checkpoints: %d, without: %d", len(cases), detectedWith, detectedWithout)
}

func verifyWithCheckpoints(l *checkpointedLog) (CheckpointReport, Report, error) {
	cps, err := ReadCheckpoints(l.cpPath, testKey)
	if err != nil {
		return CheckpointReport{}, Report{}, err
	}
	files, _ := filepath.Glob(filepath.Join(l.dir, "audit-*.jsonl"))
	rep, cr, err := VerifyCheckpoints(testKey, cps, files...)
	return cr, rep, err
}

func last(files []string) string { return files[len(files)-1] }

func mustRemove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

// replaceIn replaces the first old with new in line i (0-based) of path.
func replaceIn(t *testing.T, path string, i int, old, new string) {
	t.Helper()
	ls := lines(t, path)
	if !bytes.Contains(ls[i], []byte(old)) {
		t.Fatalf("%s line %d has no %s: %s", path, i+1, old, ls[i])
	}
	ls[i] = bytes.Replace(ls[i], []byte(old), []byte(new), 1)
	writeLines(t, path, ls)
}

func TestCheckpointsReport(t *testing.T) {
	l := writeCheckpointedLog(t)
	cr, rep, err := verifyWithCheckpoints(l)
	if err != nil {
		t.Fatal(err)
	}
	// A header per file and 33 calls. Checkpoints after calls 10, 20, 30 and at Close.
	if rep.LastSeq != uint64(33+len(rep.Files)) || cr.Checkpoints != 4 || cr.Checked != 4 || cr.After != 0 {
		t.Errorf("report %+v, checkpoints %+v", rep, cr)
	}
	if cr.Newest.Seq != rep.LastSeq || cr.Newest.Hash != rep.LastHash || cr.Newest.File != rep.Files[len(rep.Files)-1].Name || cr.Newest.Time.Before(t0.Add(4*time.Minute)) {
		t.Errorf("newest checkpoint %+v, report %+v", cr.Newest, rep)
	}
	// Without the first file: the checkpoint after call 10, in it, is not checked.
	rep, cr, err = VerifyCheckpoints(testKey, l.checkpoints(t), l.files(t)[1:]...)
	if err != nil || cr.Checked != 3 || rep.StartsAfter == "" {
		t.Errorf("newer files only: %v %+v %+v", err, cr, rep)
	}
	if _, err := ReadCheckpoints(l.cpPath, []byte("another key, 32 bytes or longer......")); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Errorf("checkpoints read with another key: %v", err)
	}
}

func TestWriterRefusesALogBehindItsCheckpoints(t *testing.T) {
	l := writeCheckpointedLog(t)
	l.cutAfter(t, l.checkpoints(t)[2].Seq-1)
	_, err := Open(Options{Path: filepath.Join(l.dir, "audit.jsonl"), HMACKey: testKey, Checkpoints: &CheckpointOptions{Path: l.cpPath}})
	if err == nil || !strings.Contains(err.Error(), "records were removed") {
		t.Fatalf("Open of a log cut before its last checkpoint: %v", err)
	}
}

func TestCheckpointOptions(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no key at all", Options{Checkpoints: &CheckpointOptions{Path: filepath.Join(dir, "cp", "c.jsonl")}}, "HMAC key of at least 32 bytes"},
		{"in the log's directory", Options{HMACKey: testKey, Checkpoints: &CheckpointOptions{Path: filepath.Join(dir, "log", "c.jsonl")}}, "must not be in the log's directory"},
		{"no path", Options{HMACKey: testKey, Checkpoints: &CheckpointOptions{}}, "Path is required"},
	} {
		tc.o.Path = filepath.Join(dir, "log", "audit.jsonl")
		if _, err := Open(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	// An unkeyed log with a checkpoint key of its own.
	cpKey := []byte("a checkpoint key of 32 bytes or more")
	cpPath := filepath.Join(dir, "cp", "c.jsonl")
	w, err := Open(Options{Path: filepath.Join(dir, "plain", "audit.jsonl"), Checkpoints: &CheckpointOptions{Path: cpPath, Key: cpKey}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(t.Context(), call(1)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	cps, err := ReadCheckpoints(cpPath, cpKey)
	if err != nil || len(cps) != 1 || cps[0].Seq != 2 {
		t.Fatalf("checkpoints of a plain log: %v %+v", err, cps)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "plain", "audit-*.jsonl"))
	if _, _, err := VerifyCheckpoints(nil, cps, files...); err != nil {
		t.Fatal(err)
	}
}

// The writer takes a checkpoint every interval until Close, which takes the last one and stops
// the loop.
func TestCheckpointLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		root := t.TempDir()
		cpPath := filepath.Join(root, "cp", "checkpoints.jsonl")
		w, err := Open(Options{Path: filepath.Join(root, "log", "audit.jsonl"), HMACKey: testKey,
			Checkpoints: &CheckpointOptions{Path: cpPath, Interval: time.Minute}})
		if err != nil {
			t.Fatal(err)
		}
		count := func() int {
			t.Helper()
			b, err := os.ReadFile(cpPath)
			if err != nil {
				t.Fatal(err)
			}
			return bytes.Count(b, []byte("\n"))
		}
		for i := range 3 {
			if err := w.Write(t.Context(), call(i)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Minute) // fake time: the bubble's clock
			synctest.Wait()
			if got := count(); got != i+1 {
				t.Fatalf("after %d minutes: %d checkpoints, want %d", i+1, got, i+1)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if got := count(); got != 4 {
			t.Fatalf("after Close: %d checkpoints, want 4", got)
		}
		if err := w.Checkpoint(t.Context()); !errors.Is(err, ErrClosed) {
			t.Errorf("Checkpoint after Close: %v", err)
		}
		// Close stopped the loop: the bubble ends only when its goroutines have.
	})
}

func TestFromConfigWithCheckpoints(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "checkpoint.key")
	if err := os.WriteFile(keyFile, []byte("a checkpoint key of 32 bytes or more\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cpPath := filepath.Join(dir, "elsewhere", "checkpoints.jsonl")
	c, err := configv1.Decode(fmt.Appendf(nil, "apiVersion: agentplane.io/v1alpha1\nkind: GatewayConfig\naudit: {checkpoints: {path: %q, keyFile: %q}}\n", cpPath, keyFile))
	if err != nil {
		t.Fatal(err)
	}
	w, err := FromConfig(c.Audit, filepath.Join(dir, "data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	key, _ := LoadKey(keyFile, "")
	if cps, err := ReadCheckpoints(cpPath, key); err != nil || len(cps) != 1 || cps[0].Seq != 1 {
		t.Fatalf("checkpoints after Close: %v %+v", err, cps)
	}
}
