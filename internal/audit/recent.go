package audit

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
)

// Recent returns up to n of the latest call records, newest first, for the dashboard. It reads
// only the tail of the newest files (about 1 KiB a record), not whole files, since the dashboard
// polls it; file headers are skipped. It does not verify the chain: that is Verify's job.
func (w *Writer) Recent(_ context.Context, n int) ([]Record, error) {
	w.mu.Lock()
	files, err := w.files()
	w.mu.Unlock()
	if err != nil {
		return nil, err
	}
	var out []Record
	for i := len(files) - 1; i >= 0 && len(out) < n; i-- {
		recs, err := readRecords(filepath.Join(w.dir, files[i]), int64(n-len(out))*tailBytesPerRecord)
		if err != nil {
			return nil, err
		}
		for j := len(recs) - 1; j >= 0 && len(out) < n; j-- {
			if recs[j].Kind == "" {
				out = append(out, recs[j])
			}
		}
	}
	return out, nil
}

// tailBytesPerRecord bounds how much of a file Recent reads per record it still needs; records
// are a few hundred bytes (fields are capped at MaxFieldBytes).
const tailBytesPerRecord = 4 * MaxFieldBytes

// readRecords reads the records in the last max bytes of a file.
func readRecords(path string, max int64) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if off := fi.Size() - max; off > 0 {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return nil, err
		}
	}
	var out []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if r, _, err := decodeLine(sc.Bytes()); err == nil {
			out = append(out, *r)
		}
	}
	return out, sc.Err()
}
