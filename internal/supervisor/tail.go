package supervisor

import (
	"bytes"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// Bounds of a replica's stderr tail (discovery.Endpoint.StderrTail).
const (
	stderrTailLines    = 10
	stderrTailLineSize = 512
)

// stderrTail keeps the last lines written to it, each cut to stderrTailLineSize bytes. It is
// safe for one writer and many readers.
type stderrTail struct {
	mu      sync.Mutex
	lines   []string // at most stderrTailLines, oldest first
	partial []byte   // the line being written, at most stderrTailLineSize bytes
	cut     bool     // partial was cut: drop the rest of the line
}

func (t *stderrTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if room := stderrTailLineSize - len(t.partial); !t.cut && room > 0 {
			t.partial = append(t.partial, chunk[:min(room, len(chunk))]...)
			t.cut = len(chunk) > room
		}
		if i < 0 {
			break
		}
		t.push(string(t.partial))
		t.partial, t.cut = t.partial[:0], false
		p = p[i+1:]
	}
	return n, nil
}

func (t *stderrTail) push(line string) {
	line = string(bytes.TrimRight([]byte(line), "\r"))
	if len(t.lines) == stderrTailLines {
		t.lines = slices.Delete(t.lines, 0, 1)
	}
	t.lines = append(t.lines, line)
}

// Lines returns the last lines, with a last line not ended by a newline, oldest first; nil when
// nothing was written.
func (t *stderrTail) Lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := slices.Clone(t.lines)
	if len(t.partial) > 0 {
		out = append(out, string(t.partial))
		if len(out) > stderrTailLines {
			out = out[1:]
		}
	}
	return out
}

// joinLines joins lines, each ended by a newline.
func joinLines(lines []string) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// stderrPipe gives a process a pipe for its stderr, and copies what comes out of it, a line
// at a time, to a log file (where stdout goes too) and to a tail.
type stderrPipe struct {
	w    *os.File // the process's end; closed once the process has it
	r    *os.File
	tail stderrTail
	done chan struct{} // closed once the copy has ended
}

func newStderrPipe(log io.Writer) (*stderrPipe, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p := &stderrPipe{w: w, r: r, done: make(chan struct{})}
	go p.copy(log)
	return p, nil
}

// copy writes whole lines to log, so that they do not interleave with stdout's within a line.
func (p *stderrPipe) copy(log io.Writer) {
	defer close(p.done)
	buf := make([]byte, 32<<10)
	var pending []byte
	for {
		n, err := p.r.Read(buf)
		if n > 0 {
			_, _ = p.tail.Write(buf[:n])
			pending = append(pending, buf[:n]...)
			if i := bytes.LastIndexByte(pending, '\n'); i >= 0 || len(pending) >= len(buf) {
				end := len(pending)
				if i >= 0 {
					end = i + 1
				}
				_, _ = log.Write(pending[:end])
				pending = append(pending[:0], pending[end:]...)
			}
		}
		if err != nil {
			if len(pending) > 0 {
				_, _ = log.Write(pending)
			}
			return
		}
	}
}

// started closes the pipe's write end, which the process now holds.
func (p *stderrPipe) started() { _ = p.w.Close() }

// finish waits up to wait for whatever the process wrote last (processes it left behind may
// hold the pipe open), then ends the copy.
func (p *stderrPipe) finish(wait time.Duration) {
	_ = p.w.Close()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
	}
	_ = p.r.Close()
	<-p.done
}
