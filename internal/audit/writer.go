package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	configv1 "github.com/agentplane/agentplane/api/config/v1alpha1"
)

// Fsync policies; see the Audit configuration.
const (
	FsyncAlways   = configv1.FsyncAlways
	FsyncInterval = configv1.FsyncInterval
	FsyncNever    = configv1.FsyncNever
)

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("audit: writer is closed")

// maxLine bounds one line when reading a log back.
const maxLine = 64 << 10

// Options configure a Writer.
type Options struct {
	// Path names the log: files are <dir>/<stem>-<first seq, 20 digits><ext>, such as
	// audit-00000000000000000001.jsonl for Path audit.jsonl.
	Path string
	// MaxFileBytes starts a new file when the current one would grow past it; default 100 MiB.
	MaxFileBytes int64
	// Fsync is FsyncAlways (default), FsyncInterval or FsyncNever.
	Fsync string
	// FsyncInterval for FsyncInterval; default 1s.
	FsyncInterval time.Duration
	// HMACKey keys the chain; nil for plain SHA-256.
	HMACKey []byte
	// Checkpoints, when set, has the writer take signed checkpoints of the chain's head into a
	// second file, so that records cut off the end are noticed (VerifyCheckpoints).
	Checkpoints *CheckpointOptions
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Writer appends records to the log. It is safe for concurrent use. Write returns after the
// record is written to the file and, with FsyncAlways, on stable storage; concurrent writers
// share fsyncs (group commit). After a write or fsync error every later Write fails: the log's
// state on disk is then unknown, and the gateway should stop serving until it is restarted.
type Writer struct {
	o              Options
	dir, stem, ext string
	alg            string
	mu             sync.Mutex   // guards the fields below and the order of lines in the file
	fileMu         sync.RWMutex // held shared while fsyncing f, exclusively while replacing it
	f              *os.File
	name           string // base name of the current file
	size           int64
	seq            uint64
	prev           string
	err            error // sticky
	closed         bool
	written        atomic.Uint64 // highest seq written to a file
	syncMu         sync.Mutex
	synced         uint64 // highest seq known on stable storage
	syncing        bool
	syncDone       chan struct{}
	timer          *time.Timer // FsyncInterval: pending sync
	syncErr        error

	// Checkpoints; cp is nil without them.
	cpMu       sync.Mutex // serializes checkpoints; guards cp.f and cp.prev
	cp         *checkpointer
	cpStop     context.CancelFunc // stops the checkpoint loop
	cpDone     chan struct{}      // closed when the checkpoint loop has returned
	cpStopOnce sync.Once
}

var _ Sink = (*Writer)(nil)

// Open opens the log at o.Path, creating its directory (mode 0700) and first file if needed. An
// existing log is continued: its newest file's last record gives the next seq and prevHash.
// Bytes after the newest file's last newline (a record torn by a crash, never acknowledged) are
// cut off first. If that last record does not verify (with the configured key, if any), Open
// fails rather than start a chain that could not be verified.
func Open(o Options) (*Writer, error) {
	if o.Path == "" {
		return nil, errors.New("audit: Options.Path is required")
	}
	if o.MaxFileBytes <= 0 {
		o.MaxFileBytes = configv1.DefaultAuditMaxFileBytes
	}
	if o.Fsync == "" {
		o.Fsync = FsyncAlways
	}
	if o.Fsync != FsyncAlways && o.Fsync != FsyncInterval && o.Fsync != FsyncNever {
		return nil, fmt.Errorf("audit: unknown fsync policy %q", o.Fsync)
	}
	if o.FsyncInterval <= 0 {
		o.FsyncInterval = time.Second
	}
	if len(o.HMACKey) > 0 && len(o.HMACKey) < MinKeyBytes {
		return nil, fmt.Errorf("audit: the HMAC key must be at least %d bytes", MinKeyBytes)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	w := &Writer{o: o, alg: AlgSHA256}
	if len(o.HMACKey) > 0 {
		w.alg = AlgHMACSHA256
	}
	w.dir = filepath.Dir(o.Path)
	base := filepath.Base(o.Path)
	w.ext = filepath.Ext(base)
	w.stem = strings.TrimSuffix(base, w.ext)
	if err := os.MkdirAll(w.dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	var cpo CheckpointOptions
	if o.Checkpoints != nil {
		var err error
		if cpo, err = w.checkpointOptions(*o.Checkpoints); err != nil {
			return nil, err
		}
	}
	if err := w.resume(); err != nil {
		return nil, err
	}
	if o.Checkpoints != nil {
		if err := w.startCheckpoints(cpo); err != nil {
			w.f.Close()
			return nil, err
		}
	}
	return w, nil
}

// checkpointOptions checks c and fills in its defaults.
func (w *Writer) checkpointOptions(c CheckpointOptions) (CheckpointOptions, error) {
	if c.Path == "" {
		return c, errors.New("audit: CheckpointOptions.Path is required")
	}
	if c.Interval <= 0 {
		c.Interval = DefaultCheckpointInterval
	}
	if c.Key == nil {
		c.Key = w.o.HMACKey
	}
	if len(c.Key) < MinKeyBytes {
		return c, fmt.Errorf("audit: checkpoints are signed with an HMAC key of at least %d bytes: the log's key, or a checkpoint key of their own", MinKeyBytes)
	}
	cpDir, err := filepath.Abs(filepath.Dir(c.Path))
	if err != nil {
		return c, fmt.Errorf("audit: %w", err)
	}
	if logDir, err := filepath.Abs(w.dir); err != nil || logDir == cpDir {
		return c, fmt.Errorf("audit: the checkpoints file %s must not be in the log's directory: whoever can cut the log could cut it too", c.Path)
	}
	return c, nil
}

// startCheckpoints opens the checkpoints file, checks that the log still reaches its last
// checkpoint, and starts the loop that takes checkpoints.
func (w *Writer) startCheckpoints(c CheckpointOptions) error {
	cp, err := openCheckpoints(c.Path, c.Key)
	if err != nil {
		return err
	}
	if p := cp.prev; p != nil && (p.Seq > w.seq || p.Seq == w.seq && p.Hash != w.prev) {
		cp.f.Close()
		return fmt.Errorf("audit: the log ends at seq %d, but the checkpoint of %s recorded seq %d: records were removed; run agentplane audit verify --checkpoints",
			w.seq, p.Time.Format(time.RFC3339), p.Seq)
	}
	w.cp = cp
	ctx, stop := context.WithCancel(context.Background())
	w.cpStop, w.cpDone = stop, make(chan struct{})
	go w.checkpointLoop(ctx, c.Interval)
	return nil
}

// checkpointLoop takes a checkpoint every interval until ctx ends, whether or not records were
// written since the last one: the age of the newest checkpoint tells how long ago the writer
// last ran.
func (w *Writer) checkpointLoop(ctx context.Context, interval time.Duration) {
	defer close(w.cpDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := w.Checkpoint(ctx); err != nil && ctx.Err() == nil {
				w.o.Logger.Error("audit checkpoint failed", "err", err)
			}
		}
	}
}

// Checkpoint writes a checkpoint of the chain's head to the checkpoints file, once the head
// record is on stable storage. The Writer takes checkpoints by itself every interval and on
// Close; Checkpoint takes one more now.
func (w *Writer) Checkpoint(ctx context.Context) error {
	if w.cp == nil {
		return errors.New("audit: no checkpoints configured")
	}
	w.mu.Lock()
	if err := w.unusableLocked(); err != nil {
		w.mu.Unlock()
		return err
	}
	c := Checkpoint{Seq: w.seq, Hash: w.prev, File: w.name}
	w.mu.Unlock()
	// A checkpoint never names a record that a power loss could take back.
	if err := w.syncUpTo(ctx, c.Seq); err != nil {
		return err
	}
	w.cpMu.Lock()
	defer w.cpMu.Unlock()
	if w.cp.f == nil {
		return ErrClosed
	}
	if p := w.cp.prev; p != nil && p.Seq > c.Seq {
		return nil // a concurrent checkpoint took a later head
	}
	c.Time = w.o.Now().UTC()
	return w.cp.write(c)
}

// unusableLocked is why no record or checkpoint can be written now: the writer is closed, or an
// earlier write failed. w.mu is held.
func (w *Writer) unusableLocked() error {
	if w.closed {
		return ErrClosed
	}
	return w.err
}

// fileName is the name of the file whose first record has seq.
func (w *Writer) fileName(seq uint64) string {
	return fmt.Sprintf("%s-%020d%s", w.stem, seq, w.ext)
}

// files lists the log's files, oldest first.
func (w *Writer) files() ([]string, error) {
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		digits, ok := strings.CutPrefix(n, w.stem+"-")
		if !ok || e.IsDir() {
			continue
		}
		digits, ok = strings.CutSuffix(digits, w.ext)
		if _, err := strconv.ParseUint(digits, 10, 64); !ok || len(digits) != 20 || err != nil {
			continue
		}
		out = append(out, n)
	}
	slices.Sort(out) // fixed-width seq: name order is chain order
	return out, nil
}

func (w *Writer) resume() error {
	files, err := w.files()
	if err != nil {
		return err
	}
	for len(files) > 0 {
		last := files[len(files)-1]
		rec, header, size, err := w.tail(filepath.Join(w.dir, last))
		if err != nil {
			return err
		}
		if rec == nil { // empty after cutting a torn header: the file never held a record
			if err := os.Remove(filepath.Join(w.dir, last)); err != nil {
				return fmt.Errorf("audit: %w", err)
			}
			files = files[:len(files)-1]
			continue
		}
		w.seq, w.prev = rec.Seq, rec.Hash
		w.written.Store(rec.Seq)
		w.synced = rec.Seq
		if header.Alg != w.alg {
			w.o.Logger.Warn("audit log hash algorithm changes; starting a new file", "from", header.Alg, "to", w.alg)
			return w.startFile(last)
		}
		f, err := os.OpenFile(filepath.Join(w.dir, last), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		w.f, w.name, w.size = f, last, size
		return nil
	}
	return w.startFile("")
}

// tail reads a file's header and last record, cutting a torn final line off, and checks the last
// record's hash. It returns a nil record for a file with no complete record.
func (w *Writer) tail(path string) (last, header *Record, size int64, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("audit: %w", err)
	}
	end := bytes.LastIndexByte(data, '\n') + 1
	if end < len(data) {
		w.o.Logger.Warn("audit log ends in a torn record, never acknowledged; cutting it off", "file", filepath.Base(path), "bytes", len(data)-end)
		if err := os.Truncate(path, int64(end)); err != nil {
			return nil, nil, 0, fmt.Errorf("audit: %w", err)
		}
		data = data[:end]
	}
	if end == 0 {
		return nil, nil, 0, nil
	}
	first := data[:bytes.IndexByte(data, '\n')]
	header, _, err = decodeLine(first)
	if err != nil || header.Kind != KindFile {
		return nil, nil, 0, fmt.Errorf("audit: cannot continue %s: its first line is not a file header; run agentplane audit verify", path)
	}
	lastLine := data[bytes.LastIndexByte(data[:end-1], '\n')+1 : end-1]
	rec, body, err := decodeLine(lastLine)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("audit: cannot continue %s: its last record is unreadable (%v); run agentplane audit verify", path, err)
	}
	var key []byte
	switch {
	case header.Alg == AlgHMACSHA256 && len(w.o.HMACKey) == 0:
		return nil, nil, 0, fmt.Errorf("audit: %s is keyed with HMAC but no key is configured; configure audit.hmacKeyFile (a keyed chain is never continued unkeyed)", path)
	case header.Alg == AlgHMACSHA256:
		key = w.o.HMACKey
	case header.Alg != AlgSHA256:
		return nil, nil, 0, fmt.Errorf("audit: %s: unknown hash algorithm %q", path, header.Alg)
	}
	if sum(key, body) != rec.Hash {
		return nil, nil, 0, fmt.Errorf("audit: cannot continue %s: its last record does not verify (edited, or a different HMAC key); run agentplane audit verify", path)
	}
	return rec, header, int64(end), nil
}

// startFile creates the file for the next seq and writes its header; w.mu is held or w is not
// shared yet.
func (w *Writer) startFile(prevFile string) error {
	seq := w.seq + 1
	name := w.fileName(seq)
	f, err := os.OpenFile(filepath.Join(w.dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	h := Record{Seq: seq, Time: w.o.Now().UTC(), Kind: KindFile, File: name, PrevFile: prevFile, Alg: w.alg, PrevHash: w.prev}
	line, err := encodeLine(&h, w.o.HMACKey)
	if err == nil {
		_, err = f.Write(line)
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = syncDir(w.dir)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("audit: starting %s: %w", name, err)
	}
	w.f, w.name, w.size = f, name, int64(len(line))
	w.seq, w.prev = seq, h.Hash
	w.written.Store(seq)
	w.syncMu.Lock()
	w.synced = seq
	w.syncMu.Unlock()
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// rotate closes the current file, fsynced, and starts the next; w.mu is held.
func (w *Writer) rotate() error {
	w.fileMu.Lock()
	defer w.fileMu.Unlock()
	old := w.f
	if err := old.Sync(); err != nil {
		return fmt.Errorf("audit: fsync before rotating: %w", err)
	}
	if err := old.Close(); err != nil {
		return fmt.Errorf("audit: closing before rotating: %w", err)
	}
	return w.startFile(w.name)
}

// Write appends r as the next record. It sets Seq, Time, PrevHash and Hash, clears the header
// fields, and cuts string fields to MaxFieldBytes. It returns once the record is in the file
// and, with FsyncAlways, fsynced; if ctx ends while waiting for the fsync it returns ctx's error
// (the record is written and will be synced).
func (w *Writer) Write(ctx context.Context, r Record) error {
	r.Kind, r.File, r.PrevFile, r.Alg, r.Hash = "", "", "", "", ""
	for _, p := range []*string{&r.Route, &r.Subject, &r.Tenant, &r.Agent, &r.Method, &r.TaskID, &r.Outcome, &r.Replica, &r.Site, &r.Via} {
		*p = sanitize(*p)
	}
	w.mu.Lock()
	if err := w.unusableLocked(); err != nil {
		w.mu.Unlock()
		return err
	}
	r.Seq, r.PrevHash, r.Time = w.seq+1, w.prev, w.o.Now().UTC()
	line, err := encodeLine(&r, w.o.HMACKey)
	if err != nil {
		w.mu.Unlock()
		return fmt.Errorf("audit: encoding a record: %w", err)
	}
	if w.size+int64(len(line)) > w.o.MaxFileBytes {
		if err := w.rotate(); err != nil {
			w.err = err
			w.mu.Unlock()
			return err
		}
		r.Seq, r.PrevHash = w.seq+1, w.prev
		if line, err = encodeLine(&r, w.o.HMACKey); err != nil {
			w.mu.Unlock()
			return err
		}
	}
	if _, err := w.f.Write(line); err != nil {
		// A partial line may be in the file now; nothing more may follow it.
		w.err = fmt.Errorf("audit: writing a record: %w", err)
		w.mu.Unlock()
		return w.err
	}
	w.seq, w.prev, w.size = r.Seq, r.Hash, w.size+int64(len(line))
	w.written.Store(r.Seq)
	w.mu.Unlock()

	switch w.o.Fsync {
	case FsyncAlways:
		return w.syncUpTo(ctx, r.Seq)
	case FsyncInterval:
		w.scheduleSync()
	}
	return nil
}

// syncUpTo returns once records up to seq are fsynced. One caller fsyncs at a time; the others
// wait for it and find their records covered, so concurrent writes share fsyncs.
func (w *Writer) syncUpTo(ctx context.Context, seq uint64) error {
	for {
		w.syncMu.Lock()
		if w.syncErr != nil {
			err := w.syncErr
			w.syncMu.Unlock()
			return err
		}
		if w.synced >= seq {
			w.syncMu.Unlock()
			return nil
		}
		if w.syncing {
			done := w.syncDone
			w.syncMu.Unlock()
			select {
			case <-done:
				continue
			case <-ctx.Done():
				return fmt.Errorf("audit: record %d written but not yet fsynced: %w", seq, ctx.Err())
			}
		}
		w.syncing, w.syncDone = true, make(chan struct{})
		w.syncMu.Unlock()

		w.fileMu.RLock()
		target := w.written.Load()
		var err error
		if w.f != nil {
			err = w.f.Sync()
		}
		w.fileMu.RUnlock()

		w.syncMu.Lock()
		if err != nil {
			w.syncErr = fmt.Errorf("audit: fsync: %w", err)
		} else if target > w.synced {
			w.synced = target
		}
		w.syncing = false
		close(w.syncDone)
		w.syncMu.Unlock()
		if err != nil {
			// Lock order is mu before syncMu, so mu is taken only after syncMu is released.
			w.mu.Lock()
			if w.err == nil {
				w.err = fmt.Errorf("audit: fsync: %w", err)
			}
			w.mu.Unlock()
		}
	}
}

// scheduleSync arranges an fsync within FsyncInterval, unless one is pending.
func (w *Writer) scheduleSync() {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	if w.timer != nil {
		return
	}
	w.timer = time.AfterFunc(w.o.FsyncInterval, func() {
		w.syncMu.Lock()
		w.timer = nil
		w.syncMu.Unlock()
		if err := w.syncUpTo(context.Background(), w.written.Load()); err != nil && !errors.Is(err, os.ErrClosed) {
			w.o.Logger.Error("audit log fsync failed", "err", err)
		}
	})
}

// Head returns the seq and hash of the last record written. Publishing them elsewhere (a
// metric, a log line, a ticket) anchors the chain: records cut off the end after that point are
// then noticed by comparing.
func (w *Writer) Head() (seq uint64, hash string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seq, w.prev
}

// Close takes a last checkpoint (with checkpoints), fsyncs and closes the current file. Later
// Writes return ErrClosed.
func (w *Writer) Close() error {
	var cpErr error
	if w.cp != nil {
		w.cpStopOnce.Do(func() {
			w.cpStop()
			<-w.cpDone
			cpErr = w.Checkpoint(context.Background())
			w.cpMu.Lock()
			if err := w.cp.f.Close(); cpErr == nil {
				cpErr = err
			}
			w.cp.f = nil
			w.cpMu.Unlock()
		})
	}
	return errors.Join(cpErr, w.closeLog())
}

func (w *Writer) closeLog() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	w.syncMu.Lock()
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	w.syncMu.Unlock()
	w.fileMu.Lock()
	defer w.fileMu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	return err
}

// FromConfig opens the writer a defaulted, validated audit configuration describes. dataDir is
// used when the configuration names no path: <dataDir>/audit/audit.jsonl.
func FromConfig(c configv1.Audit, dataDir string, logger *slog.Logger) (*Writer, error) {
	key, err := LoadKey(c.HMACKeyFile, c.HMACKeyEnv)
	if err != nil {
		return nil, err
	}
	o := Options{Path: c.Path, MaxFileBytes: c.MaxFileBytes, Fsync: c.Fsync, HMACKey: key, Logger: logger}
	if o.Path == "" {
		o.Path = filepath.Join(dataDir, "audit", "audit.jsonl")
	}
	if c.FsyncInterval != nil {
		o.FsyncInterval = c.FsyncInterval.Duration
	}
	if cc := c.Checkpoints; cc != nil {
		o.Checkpoints = &CheckpointOptions{Path: cc.Path, Key: key}
		if cc.KeyFile != "" {
			if o.Checkpoints.Key, err = LoadKey(cc.KeyFile, ""); err != nil {
				return nil, fmt.Errorf("audit.checkpoints.keyFile: %w", err)
			}
		}
		if cc.Interval != nil {
			o.Checkpoints.Interval = cc.Interval.Duration
		}
	}
	return Open(o)
}

var _ io.Closer = (*Writer)(nil)
