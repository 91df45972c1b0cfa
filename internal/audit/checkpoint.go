package audit

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Checkpoint is a signed copy of the chain's head, written to a file kept apart from the log
// (CheckpointOptions). A chain that ends before a checkpoint's seq, or holds another hash at it,
// lost records or was rewritten after the checkpoint was taken.
type Checkpoint struct {
	// Seq and Hash are the last record written when the checkpoint was taken; that record was
	// on stable storage before the checkpoint was written.
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
	// File is the name (in its header) of the log file that holds record Seq.
	File string `json:"file"`
	// Time is when the checkpoint was taken.
	Time time.Time `json:"time"`
	// PrevSig is the signature of the checkpoint before it in the file, empty for the first:
	// lines removed from the middle of the file break this link.
	PrevSig string `json:"prevSig"`
	// Sig is HMAC-SHA-256, keyed with the checkpoint key, over checkpointDomain and the
	// checkpoint's canonical JSON without sig.
	Sig string `json:"sig,omitempty"`
}

// checkpointDomain separates checkpoint signatures from record hashes made with the same key.
const checkpointDomain = "agentplane audit checkpoint v1\n"

// DefaultCheckpointInterval is how often a Writer takes a checkpoint unless told otherwise.
const DefaultCheckpointInterval = time.Minute

// CheckpointOptions configure a Writer's checkpoints.
type CheckpointOptions struct {
	// Path of the checkpoints file, appended to (JSON Lines, fsynced). It must not be in the log's
	// directory: keep it where whoever can change the log cannot (another host's mount, an
	// append-only file).
	Path string
	// Interval between checkpoints; default DefaultCheckpointInterval. A checkpoint is also taken
	// by Close.
	Interval time.Duration
	// Key signs the checkpoints (HMAC-SHA-256, at least MinKeyBytes); default Options.HMACKey.
	// One of them is required.
	Key []byte
}

func (c *Checkpoint) sign(key []byte) ([]byte, error) {
	body, err := c.canonical()
	if err != nil {
		return nil, err
	}
	c.Sig = checkpointSig(key, body)
	return sealLine(body, "sig", c.Sig), nil
}

func (c *Checkpoint) canonical() ([]byte, error) {
	u := *c
	u.Sig = ""
	return json.Marshal(&u)
}

func checkpointSig(key, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(checkpointDomain))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// decodeCheckpoint parses one line (without its newline), requires the exact bytes sign would
// write, and checks the signature.
func decodeCheckpoint(line, key []byte) (*Checkpoint, error) {
	var c Checkpoint
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("not a checkpoint: %w", err)
	}
	if dec.More() {
		return nil, errors.New("not a checkpoint: more than one JSON value on the line")
	}
	sig := c.Sig
	want, err := c.sign(key) // sets c.Sig to the right signature
	if err != nil {
		return nil, fmt.Errorf("not a checkpoint: %w", err)
	}
	if !hmac.Equal([]byte(sig), []byte(c.Sig)) {
		c.Sig = sig
		return &c, errBadSignature
	}
	if !bytes.Equal(want[:len(want)-1], line) {
		return &c, errors.New("checkpoint is not in canonical form: it was edited")
	}
	return &c, nil
}

var errBadSignature = errors.New("the signature does not match: the checkpoint was forged or edited, or signed with another key")

// ReadCheckpoints reads and checks a checkpoints file: every line signed with key, each linked to
// the one before it (prevSig), seqs never going back. A problem is returned as a *Problem naming
// the line. An empty file is a problem too: checkpoints were removed, or none was ever taken.
func ReadCheckpoints(path string, key []byte) ([]Checkpoint, error) {
	if len(key) < MinKeyBytes {
		return nil, fmt.Errorf("the checkpoint key must be at least %d bytes", MinKeyBytes)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoints: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, maxLine)
	var out []Checkpoint
	for n := 1; ; n++ {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, io.EOF) {
			if len(line) > 0 {
				return nil, &Problem{Path: path, Line: n, Reason: "the last line is incomplete: the file was truncated, or a write was torn by a crash"}
			}
			break
		}
		if err != nil {
			return nil, &Problem{Path: path, Line: n, Reason: fmt.Sprintf("reading: %v", err)}
		}
		c, err := decodeCheckpoint(line[:len(line)-1], key)
		if err != nil {
			p := &Problem{Path: path, Line: n, Reason: err.Error()}
			if c != nil {
				p.Seq = c.Seq
			}
			return nil, p
		}
		prob := func(format string, args ...any) error {
			return &Problem{Path: path, Line: n, Seq: c.Seq, Reason: fmt.Sprintf(format, args...)}
		}
		switch {
		case len(out) == 0 && c.PrevSig != "":
			return nil, prob("the first checkpoint has a prevSig: checkpoints before it were removed")
		case len(out) > 0 && c.PrevSig != out[len(out)-1].Sig:
			return nil, prob("prevSig does not match the checkpoint before it: checkpoints were removed or reordered")
		case len(out) > 0 && c.Seq < out[len(out)-1].Seq:
			return nil, prob("seq goes back from %d: the log was cut and written again", out[len(out)-1].Seq)
		}
		out = append(out, *c)
	}
	if len(out) == 0 {
		return nil, &Problem{Path: path, Reason: "no checkpoints: they were removed, or none was ever taken"}
	}
	return out, nil
}

// CheckpointReport says how a chain compares with its checkpoints.
type CheckpointReport struct {
	Checkpoints int // in the file
	// Checked is how many of them fall in the chain given; the others are older than its start.
	Checked int
	Newest  Checkpoint
	// After is how many records the chain holds after the newest checkpoint: whether they were
	// cut off cannot be told from the checkpoints.
	After uint64
}

// VerifyCheckpoints checks files as VerifyKeyed does, and that the chain agrees with every
// checkpoint in cps that falls in it: the chain must reach the newest checkpoint's seq, and hold
// the checkpoint's hash at each checkpoint's seq, in the file the checkpoint names. So records
// cut off the end and newest files deleted are caught up to the newest checkpoint; records after
// it are not covered. cps are as ReadCheckpoints returns them.
func VerifyCheckpoints(key []byte, cps []Checkpoint, files ...string) (Report, CheckpointReport, error) {
	cr := CheckpointReport{Checkpoints: len(cps)}
	if len(cps) == 0 {
		return Report{}, cr, errors.New("no checkpoints given")
	}
	cr.Newest = cps[len(cps)-1]
	v := &verifier{key: key, checkpoints: map[uint64][]Checkpoint{}}
	for _, c := range cps {
		v.checkpoints[c.Seq] = append(v.checkpoints[c.Seq], c)
	}
	rep, err := v.verify(files)
	if err != nil {
		return rep, cr, err
	}
	last := rep.Files[len(rep.Files)-1]
	if cr.Newest.Seq > rep.LastSeq {
		return rep, cr, &Problem{Path: last.Path, Seq: rep.LastSeq, Reason: fmt.Sprintf(
			"the chain ends at seq %d, but the checkpoint of %s recorded seq %d in %s: records were cut off the end, or the newest files deleted",
			rep.LastSeq, cr.Newest.Time.Format(time.RFC3339), cr.Newest.Seq, cr.Newest.File)}
	}
	for _, c := range cps {
		if c.Seq >= rep.FirstSeq {
			cr.Checked++
		}
	}
	cr.After = rep.LastSeq - cr.Newest.Seq
	return rep, cr, nil
}

// checkCheckpoints compares record rec, at line n of the file named name in its header, with the
// checkpoints taken at its seq.
func (v *verifier) checkCheckpoints(path string, n int, name string, rec *Record) error {
	for _, c := range v.checkpoints[rec.Seq] {
		switch {
		case c.Hash != rec.Hash:
			return &Problem{Path: path, Line: n, Seq: rec.Seq, Reason: fmt.Sprintf(
				"the hash differs from the checkpoint of %s: the chain was rewritten from here on", c.Time.Format(time.RFC3339))}
		case c.File != name:
			return &Problem{Path: path, Line: n, Seq: rec.Seq, Reason: fmt.Sprintf(
				"the checkpoint of %s has this record in %s, not %s: files were renamed in the chain", c.Time.Format(time.RFC3339), c.File, name)}
		}
	}
	return nil
}

// checkpointer writes a Writer's checkpoints.
type checkpointer struct {
	path string
	key  []byte
	f    *os.File
	prev *Checkpoint // the last checkpoint in the file; nil if there is none
}

// openCheckpoints opens the checkpoints file for appending, creating it and its directory
// (0700) if needed. It cuts off a torn last line, and checks the last checkpoint's signature.
func openCheckpoints(path string, key []byte) (*checkpointer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit checkpoints: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("audit checkpoints: %w", err)
	}
	if end := bytes.LastIndexByte(data, '\n') + 1; end < len(data) {
		if err := os.Truncate(path, int64(end)); err != nil {
			return nil, fmt.Errorf("audit checkpoints: cutting off a torn last line: %w", err)
		}
		data = data[:end]
	}
	cp := &checkpointer{path: path, key: key}
	if len(data) > 0 {
		lastLine := data[bytes.LastIndexByte(data[:len(data)-1], '\n')+1 : len(data)-1]
		c, err := decodeCheckpoint(lastLine, key)
		if err != nil {
			return nil, fmt.Errorf("audit checkpoints: cannot continue %s: its last line: %w; run agentplane audit verify --checkpoints", path, err)
		}
		cp.prev = c
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit checkpoints: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit checkpoints: %w", err)
	}
	cp.f = f
	return cp, nil
}

// write appends c, signed and linked to the checkpoint before it, and fsyncs the file.
func (cp *checkpointer) write(c Checkpoint) error {
	if cp.prev != nil {
		c.PrevSig = cp.prev.Sig
	}
	line, err := c.sign(cp.key)
	if err != nil {
		return fmt.Errorf("audit checkpoint: %w", err)
	}
	if _, err := cp.f.Write(line); err != nil {
		return fmt.Errorf("audit checkpoint: %w", err)
	}
	if err := cp.f.Sync(); err != nil {
		return fmt.Errorf("audit checkpoint: fsync: %w", err)
	}
	cp.prev = &c
	return nil
}
