package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
)

var errLineTooLong = errors.New("event stream line too long")

// sseEvent is one server-sent event: its data lines joined by "\n", or a comment (keep-alive).
type sseEvent struct {
	data    []byte
	comment bool
}

type sseReader struct {
	br      *bufio.Reader
	line    []byte
	maxLine int
}

func newSSEReader(r io.Reader, maxLine int) *sseReader {
	return &sseReader{br: bufio.NewReaderSize(r, 64<<10), maxLine: maxLine}
}

// next returns the next event. Event ids and names are dropped: the gateway re-numbers nothing
// and resumption goes through SubscribeToTask, not Last-Event-ID.
func (s *sseReader) next() (sseEvent, error) {
	var ev sseEvent
	seen := false
	for {
		line, err := s.readLine()
		if err != nil {
			if err == io.EOF && seen && (len(ev.data) > 0 || ev.comment) {
				return ev, nil
			}
			return sseEvent{}, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			if seen {
				return ev, nil
			}
			continue
		}
		seen = true
		switch {
		case line[0] == ':':
			ev.comment = true
		case bytes.HasPrefix(line, []byte("data:")):
			d := bytes.TrimPrefix(line[5:], []byte(" "))
			if ev.data != nil {
				ev.data = append(ev.data, '\n')
			}
			ev.data = append(ev.data, d...)
		}
	}
}

func (s *sseReader) readLine() ([]byte, error) {
	s.line = s.line[:0]
	for {
		frag, err := s.br.ReadSlice('\n')
		s.line = append(s.line, frag...)
		if len(s.line) > s.maxLine {
			return nil, errLineTooLong
		}
		if err != bufio.ErrBufferFull {
			if err == io.EOF && len(s.line) > 0 {
				return s.line, nil
			}
			return s.line, err
		}
	}
}

// errClientGone means writing to the client failed.
var errClientGone = errors.New("client went away")

// sseWriter writes events to the client and flushes each one.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
	events  int
}

func newSSEWriter(w http.ResponseWriter) *sseWriter {
	return &sseWriter{w: w, rc: http.NewResponseController(w)}
}

// start sends the stream's headers.
func (s *sseWriter) start(replica string) error {
	if s.started {
		return nil
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set(HeaderReplica, replica)
	s.w.WriteHeader(http.StatusOK)
	if err := s.rc.Flush(); err != nil {
		return errClientGone
	}
	return nil
}

func (s *sseWriter) event(payload []byte) error {
	var buf bytes.Buffer
	for line := range bytes.SplitSeq(payload, []byte("\n")) {
		buf.WriteString("data: ")
		buf.Write(line)
		buf.WriteByte('\n')
	}
	buf.WriteByte('\n')
	if _, err := s.w.Write(buf.Bytes()); err != nil {
		return errClientGone
	}
	if err := s.rc.Flush(); err != nil {
		return errClientGone
	}
	s.events++
	return nil
}

func (s *sseWriter) comment() error {
	if _, err := s.w.Write([]byte(": keep-alive\n\n")); err != nil {
		return errClientGone
	}
	if err := s.rc.Flush(); err != nil {
		return errClientGone
	}
	return nil
}
