package audit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// ErrBroken is matched by every *Problem: the log does not verify.
var ErrBroken = errors.New("audit log does not verify")

// Problem names the first record that does not verify.
type Problem struct {
	Path   string // the file as given
	Line   int    // 1-based; 0 for the file as a whole
	Seq    uint64 // the record's seq when it could be read
	Reason string
}

func (p *Problem) Error() string {
	where := p.Path
	if p.Line > 0 {
		where = fmt.Sprintf("%s:%d", p.Path, p.Line)
	}
	if p.Seq > 0 {
		return fmt.Sprintf("%s: seq %d: %s", where, p.Seq, p.Reason)
	}
	return where + ": " + p.Reason
}

func (p *Problem) Unwrap() error { return ErrBroken }

// FileReport summarises one verified file.
type FileReport struct {
	Path     string
	Name     string // the name in the file's header
	FirstSeq uint64
	LastSeq  uint64
	Records  int
	Alg      string
}

// Report summarises a verified chain.
type Report struct {
	Files    []FileReport // in chain order
	Records  int
	FirstSeq uint64
	LastSeq  uint64
	// LastHash is the chain's head: compare it with an outside copy to notice records cut off
	// the end.
	LastHash string
	// StartsAfter names the file before the first one given when the chain does not start at
	// seq 1 there (older files were archived or not given); their records were not checked.
	StartsAfter string
	Keyed       bool // every file is HMAC-keyed
}

// Verify checks plain (unkeyed) hash chains; see VerifyKeyed.
func Verify(files ...string) (Report, error) { return VerifyKeyed(nil, files...) }

// VerifyKeyed checks that files form one unbroken chain and returns the first problem as a
// *Problem: a record edited (hash mismatch, or not in canonical form), deleted, inserted or
// reordered (seq or prevHash out of line), a file missing between two given ones (the header's
// prevFile is not the file before it), a torn or truncated last line, or a keyed chain checked
// without its key. Files may be given in any order; they are put in chain order by the seq of
// their header. With key set, every record must be HMAC-keyed with it, except plain files that
// come before the first keyed one (a log upgraded to HMAC).
func VerifyKeyed(key []byte, files ...string) (Report, error) {
	return (&verifier{key: key}).verify(files)
}

func (v *verifier) verify(files []string) (Report, error) {
	var rep Report
	v.rep = &rep
	if len(files) == 0 {
		return rep, errors.New("no audit files given")
	}
	type head struct {
		path string
		rec  *Record
	}
	heads := make([]head, 0, len(files))
	for _, p := range files {
		h, err := readHeader(p)
		if err != nil {
			return rep, err
		}
		heads = append(heads, head{p, h})
	}
	slices.SortStableFunc(heads, func(a, b head) int {
		switch {
		case a.rec.Seq < b.rec.Seq:
			return -1
		case a.rec.Seq > b.rec.Seq:
			return 1
		}
		return 0
	})
	for i, h := range heads {
		if i > 0 && h.rec.Seq == heads[i-1].rec.Seq {
			return rep, &Problem{Path: h.path, Line: 1, Seq: h.rec.Seq, Reason: fmt.Sprintf("starts at the same seq as %s: the same file given twice, or a copy", heads[i-1].path)}
		}
		if err := v.file(h.path); err != nil {
			return rep, err
		}
	}
	if v.key != nil && !v.keyedSeen {
		last := heads[len(heads)-1]
		return rep, &Problem{Path: last.path, Line: 1, Reason: "a key was given but no file is HMAC-keyed: the chain may have been rewritten without the key"}
	}
	rep.Keyed = v.keyedSeen && !v.anyPlain
	return rep, nil
}

func readHeader(path string) (*Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	line, err := bufio.NewReaderSize(f, maxLine).ReadSlice('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, &Problem{Path: path, Line: 1, Reason: fmt.Sprintf("reading the first line: %v", err)}
	}
	if len(line) == 0 {
		return nil, &Problem{Path: path, Reason: "empty file: a log file always starts with a header record"}
	}
	rec, _, err := decodeLine(bytes.TrimSuffix(line, []byte("\n")))
	if err != nil {
		return nil, &Problem{Path: path, Line: 1, Reason: err.Error()}
	}
	if rec.Kind != KindFile {
		return nil, &Problem{Path: path, Line: 1, Seq: rec.Seq, Reason: "the first line is not a file header: the file's beginning was cut off or replaced"}
	}
	return rec, nil
}

type verifier struct {
	key       []byte
	rep       *Report
	started   bool
	seq       uint64
	hash      string
	prevName  string
	keyedSeen bool
	anyPlain  bool
	// checkpoints by seq, for VerifyCheckpoints; nil for none.
	checkpoints map[uint64][]Checkpoint
}

func (v *verifier) file(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fr := FileReport{Path: path}
	br := bufio.NewReaderSize(f, maxLine)
	var key []byte
	for n := 1; ; n++ {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, io.EOF) {
			if len(line) > 0 {
				return &Problem{Path: path, Line: n, Reason: "the last line is incomplete: the file was truncated, or a write was torn by a crash"}
			}
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			return &Problem{Path: path, Line: n, Reason: fmt.Sprintf("line longer than %d bytes: not a record", maxLine)}
		}
		if err != nil {
			return &Problem{Path: path, Line: n, Reason: err.Error()}
		}
		line = line[:len(line)-1]
		rec, body, err := decodeLine(line)
		if err != nil {
			return &Problem{Path: path, Line: n, Reason: err.Error()}
		}
		prob := func(format string, args ...any) error {
			return &Problem{Path: path, Line: n, Seq: rec.Seq, Reason: fmt.Sprintf(format, args...)}
		}
		if n == 1 {
			fr.Name, fr.FirstSeq, fr.Alg = rec.File, rec.Seq, rec.Alg
			switch rec.Alg {
			case AlgHMACSHA256:
				if v.key == nil {
					return prob("the chain is keyed with HMAC: give its key to verify it")
				}
				key = v.key
				v.keyedSeen = true
			case AlgSHA256:
				if v.keyedSeen {
					return prob("an unkeyed file follows a keyed one: the chain was rewritten without the key")
				}
				v.anyPlain = true
			default:
				return prob("unknown hash algorithm %q", rec.Alg)
			}
		} else if rec.Kind != "" {
			return prob("a %q record in the middle of a file: inserted", rec.Kind)
		}
		if got := sum(key, body); got != rec.Hash {
			return prob("the hash does not match the record: it was edited")
		}
		switch {
		case !v.started && n == 1:
			if rec.Seq == 1 {
				if rec.PrevHash != "" || rec.PrevFile != "" {
					return prob("the first record of the chain has a prevHash: records before it were removed")
				}
			} else {
				v.rep.StartsAfter = rec.PrevFile
			}
			v.rep.FirstSeq = rec.Seq
		case n == 1 && rec.PrevFile != v.prevName:
			return prob("this file follows %q, but the file before it here is %q: a file is missing from the chain", rec.PrevFile, v.prevName)
		case rec.Seq != v.seq+1:
			return prob("expected seq %d after %d: records were deleted, inserted or reordered", v.seq+1, v.seq)
		case rec.PrevHash != v.hash:
			return prob("prevHash does not match the hash of the record before it: a record was replaced or inserted")
		}
		if err := v.checkCheckpoints(path, n, fr.Name, rec); err != nil {
			return err
		}
		v.started, v.seq, v.hash = true, rec.Seq, rec.Hash
		fr.LastSeq = rec.Seq
		fr.Records++
	}
	// The chain links the names in headers, not the files' names on disk, so renamed copies
	// (archives) verify.
	v.prevName = fr.Name
	v.rep.Files = append(v.rep.Files, fr)
	v.rep.Records += fr.Records
	v.rep.LastSeq, v.rep.LastHash = v.seq, v.hash
	return nil
}
