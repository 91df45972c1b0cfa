package audit

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
)

// Recent returns up to n of the latest call records, newest first, for the dashboard. It reads
// the files after the writer's last acknowledged record was written; file headers are skipped.
// It does not verify the chain: that is Verify's job.
func (w *Writer) Recent(_ context.Context, n int) ([]Record, error) {
	w.mu.Lock()
	files, err := w.files()
	w.mu.Unlock()
	if err != nil {
		return nil, err
	}
	var out []Record
	for i := len(files) - 1; i >= 0 && len(out) < n; i-- {
		recs, err := readRecords(filepath.Join(w.dir, files[i]))
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

func readRecords(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
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
