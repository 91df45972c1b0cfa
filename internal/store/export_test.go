package store

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// FastTimings shortens the consumer's timings for tests: ack wait, first retry delay and the
// longest pull request.
func FastTimings(o Options, ackWait, retryDelay, pollWait time.Duration) Options {
	o.ackWait, o.retryDelay, o.pollWait = ackWait, retryDelay, pollWait
	return o
}

// EncodeKey and DecodeKey expose the key encoding to the tests.
var (
	EncodeKey = encodeKey
	DecodeKey = decodeKey
)

// SyncAlwaysForTest reports the embedded server's SyncAlways setting, and whether there is one.
func (j *JetStream) SyncAlwaysForTest() (bool, bool) {
	if j.srv == nil {
		return false, false
	}
	return j.srv.JetStreamConfig().SyncAlways, true
}

// BlobOptions sets the size of blob chunks (so that small tasks take several) and how old a blob
// no record names must be for Open to remove it.
func BlobOptions(o Options, chunkSize int, grace time.Duration) Options {
	o.chunkSize, o.blobGrace = chunkSize, grace
	return o
}

// MaxPayloadForTest sets the embedded server's max_payload; a chunk size as large keeps every
// record whole in one message, as the journal did before blobs.
func MaxPayloadForTest(o Options, maxPayload int32, chunkSize int) Options {
	o.maxPayload, o.chunkSize = maxPayload, chunkSize
	return o
}

// ChunkSize is the size of blob chunks the journal writes.
func (j *JetStream) ChunkSize() int { return j.chunkSize }

// BlobChunksForTest counts the blob chunks in the bucket's stream, leaving out the markers
// that expired ones leave for an hour.
func (j *JetStream) BlobChunksForTest(ctx context.Context) (int, error) {
	info, err := j.kvStream.Info(ctx, jetstream.WithSubjectFilter(j.kvSubj+"*.*.*"))
	if err != nil {
		return 0, err
	}
	n := 0
	for subj := range info.State.Subjects {
		m, err := j.kvStream.GetLastMsgForSubject(ctx, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if !isMarker(m.Header) {
			n++
		}
	}
	return n, nil
}

// PutStrayBlobForTest writes a chunk for key that no record names, as a writer that crashed
// before its record would leave.
func (j *JetStream) PutStrayBlobForTest(ctx context.Context, id string, data []byte) error {
	key, err := encodeKey(id)
	if err != nil {
		return err
	}
	return j.putBlob(ctx, key, blobRef{ID: nuid.Next(), Size: int64(len(data)), Chunks: 1}, data)
}
