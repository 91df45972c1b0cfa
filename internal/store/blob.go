package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Large tasks. A JetStream message holds at most the server's max_payload (1 MiB by default on
// an external server), while a task may carry an 8 MiB request and a 64 MiB result. A record
// that does not fit one message keeps its other fields in the bucket, and its Request and
// Result go to blobs: chunks on the subjects "$KV.<bucket>.<key>.<blob id>.<n>" of the same
// stream, written before the record that names them. Living in the bucket's stream, blobs share
// its replicas, its encryption at rest and its per-message TTLs, and their stream sequences
// compare with the records': a blob older than a record that does not name it belongs to no
// write that can still succeed.
//
// Life of a blob: written with no TTL for a task that is not terminal (and kept by later updates
// while the field is unchanged), or with the retention TTL plus blobGrace for a terminal
// one, so it expires after its record. Once a record is stored, the blobs of its key that it
// does not name and that are older than it are purged. A write that fails purges the blobs it
// wrote. What a crash leaves behind is purged by the next write of the task, or at the next
// Open (blobs no record names, older than blobGrace).

const (
	// blobChunkMax is the largest chunk: NATS's default max_payload. Chunks of 256 KiB and
	// 4 MiB measured within noise of it (BenchmarkTaskSize).
	blobChunkMax = 1 << 20
	// msgHeadroom is what a message's headers may take of the server's max_payload.
	msgHeadroom = 4 << 10
	// blobGrace bounds the time from a write's first blob to its record, with a wide margin
	// (callTimeout bounds a write). Open leaves a blob no record names alone until it is that
	// old, since its record may be on the way; a terminal task's blobs live that much longer
	// than its record, written after them.
	blobGrace = 5 * time.Minute
)

// blobRef names one field stored as a blob.
type blobRef struct {
	ID      string `json:"id"`
	Size    int64  `json:"size"`
	Chunks  int    `json:"chunks"`
	SHA256  string `json:"sha256"`
	Expires bool   `json:"expires,omitempty"` // written with a TTL, for a terminal task
}

// taskBlobs are the blobs of one revision of a task's record; an empty ID is a field stored in
// the record itself (or empty).
type taskBlobs struct {
	key             string
	rev             uint64
	request, result blobRef
}

func (b taskBlobs) empty() bool { return b.request.ID == "" && b.result.ID == "" }

func (b taskBlobs) names(id string) bool {
	return id != "" && (b.request.ID == id || b.result.ID == id)
}

// record is a task as the bucket stores it.
type record struct {
	*Task
	RequestBlob *blobRef `json:"requestBlob,omitempty"`
	ResultBlob  *blobRef `json:"resultBlob,omitempty"`
}

func (j *JetStream) blobSubject(key, id string, chunk int) string {
	return j.kvSubj + key + "." + id + "." + strconv.Itoa(chunk)
}

// encode returns the record to store for t. When t does not fit one message, it first writes
// Request and Result as blobs, reusing those of base (the blobs of the revision t replaces)
// that are unchanged; written lists the blobs it wrote, also on error.
func (j *JetStream) encode(lc *lazyCall, key string, t *Task, base taskBlobs) (data []byte, blobs taskBlobs, written []string, err error) {
	data, err = json.Marshal(t)
	if err != nil {
		return nil, taskBlobs{}, nil, fmt.Errorf("encode task: %w", err)
	}
	if len(data) > j.restMax {
		if err := checkRest(t, j.restMax); err != nil {
			return nil, taskBlobs{}, nil, err
		}
	}
	if len(data) <= j.inlineMax {
		return data, taskBlobs{}, nil, nil
	}
	terminal := t.State.Terminal()
	reusable := base.key == key && base.rev != 0 && base.rev == t.Revision && !terminal
	put := func(field []byte, old blobRef) (*blobRef, error) {
		if len(field) == 0 {
			return nil, nil
		}
		sum := sha256.Sum256(field)
		ref := blobRef{Size: int64(len(field)), SHA256: hex.EncodeToString(sum[:])}
		if reusable && old.ID != "" && !old.Expires && old.Size == ref.Size && old.SHA256 == ref.SHA256 {
			return &old, nil
		}
		ref.ID = nuid.Next()
		ref.Chunks = (len(field) + j.chunkSize - 1) / j.chunkSize
		ref.Expires = terminal
		written = append(written, ref.ID)
		return &ref, j.putBlob(lc.get(), key, ref, field)
	}
	// Move the larger field out first, and the other only if the record still does not fit.
	rest := *t
	rec := record{Task: &rest}
	moveRequest := func() (err error) {
		if rec.RequestBlob, err = put(t.Request, base.request); err != nil {
			return fmt.Errorf("store request: %w", err)
		}
		rest.Request = nil
		return nil
	}
	moveResult := func() (err error) {
		if rec.ResultBlob, err = put(t.Result, base.result); err != nil {
			return fmt.Errorf("store result: %w", err)
		}
		rest.Result = nil
		return nil
	}
	moves := []func() error{moveRequest, moveResult}
	if len(t.Result) > len(t.Request) {
		moves[0], moves[1] = moveResult, moveRequest
	}
	for _, move := range moves {
		if len(data) <= j.inlineMax {
			break
		}
		if err := move(); err != nil {
			return nil, taskBlobs{}, written, err
		}
		if data, err = json.Marshal(rec); err != nil {
			return nil, taskBlobs{}, written, fmt.Errorf("encode task: %w", err)
		}
	}
	if len(data) > j.inlineMax {
		return nil, taskBlobs{}, written, &TooLargeError{Field: "record", Size: int64(len(data)), Limit: int64(j.inlineMax)}
	}
	blobs.key = key
	if rec.RequestBlob != nil {
		blobs.request = *rec.RequestBlob
	}
	if rec.ResultBlob != nil {
		blobs.result = *rec.ResultBlob
	}
	return data, blobs, written, nil
}

// putBlob writes data as ref's chunks, one acknowledged publish after another.
func (j *JetStream) putBlob(ctx context.Context, key string, ref blobRef, data []byte) error {
	popts := []jetstream.PublishOpt{jetstream.WithExpectStream(j.kvStreamName)}
	if ref.Expires {
		popts = append(popts, jetstream.WithMsgTTL(j.opts.Retention+j.opts.blobGrace))
	}
	for i := range ref.Chunks {
		chunk := data[i*j.chunkSize : min((i+1)*j.chunkSize, len(data))]
		octx, cancel := op(ctx)
		_, err := j.js.PublishMsg(octx, &nats.Msg{Subject: j.blobSubject(key, ref.ID, i), Data: chunk}, popts...)
		cancel()
		if err != nil {
			return fmt.Errorf("blob %s chunk %d of %d: %w", ref.ID, i+1, ref.Chunks, err)
		}
	}
	return nil
}

// errBlobMissing is a chunk that is not in the stream: its record was replaced meanwhile, or
// the journal lost it.
var errBlobMissing = errors.New("blob chunk missing")

// getBlob reads ref's chunks and checks their size and digest.
func (j *JetStream) getBlob(ctx context.Context, key string, ref blobRef) ([]byte, error) {
	out := make([]byte, 0, ref.Size)
	for i := range ref.Chunks {
		octx, cancel := op(ctx)
		m, err := j.kvStream.GetLastMsgForSubject(octx, j.blobSubject(key, ref.ID, i))
		cancel()
		if errors.Is(err, jetstream.ErrMsgNotFound) || err == nil && isMarker(m.Header) {
			return nil, fmt.Errorf("blob %s chunk %d of %d: %w", ref.ID, i+1, ref.Chunks, errBlobMissing)
		}
		if err != nil {
			return nil, fmt.Errorf("blob %s chunk %d of %d: %w", ref.ID, i+1, ref.Chunks, err)
		}
		out = append(out, m.Data...)
	}
	sum := sha256.Sum256(out)
	if int64(len(out)) != ref.Size || hex.EncodeToString(sum[:]) != ref.SHA256 {
		return nil, fmt.Errorf("blob %s: %d bytes that do not match the record (%d bytes, sha256 %s)", ref.ID, len(out), ref.Size, ref.SHA256)
	}
	return out, nil
}

// decode reads a record and the blobs it names.
func (j *JetStream) decode(ctx context.Context, key string, data []byte, rev uint64) (*Task, error) {
	rec := record{Task: new(Task)}
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("decode task at revision %d: %w", rev, err)
	}
	t := rec.Task
	t.Revision = rev
	if rec.RequestBlob == nil && rec.ResultBlob == nil {
		return t, nil
	}
	t.blobs = taskBlobs{key: key, rev: rev}
	var err error
	if ref := rec.RequestBlob; ref != nil {
		if t.Request, err = j.getBlob(ctx, key, *ref); err != nil {
			return nil, fmt.Errorf("request at revision %d: %w", rev, err)
		}
		t.blobs.request = *ref
	}
	if ref := rec.ResultBlob; ref != nil {
		if t.Result, err = j.getBlob(ctx, key, *ref); err != nil {
			return nil, fmt.Errorf("result at revision %d: %w", rev, err)
		}
		t.blobs.result = *ref
	}
	return t, nil
}

// purgeBlobs removes the blobs of key that keep does not name and that are older than the
// record at sequence rev. Younger ones may belong to a write based on that record.
func (j *JetStream) purgeBlobs(ctx context.Context, key string, keep taskBlobs, rev uint64) error {
	ids, err := j.blobIDs(ctx, key)
	if err != nil {
		return err
	}
	for id := range ids {
		if keep.names(id) {
			continue
		}
		if err := j.purgeBlob(ctx, key, id, rev); err != nil {
			return err
		}
	}
	return nil
}

// purgeBlob removes the chunks of blob id older than sequence before (all when 0).
func (j *JetStream) purgeBlob(ctx context.Context, key, id string, before uint64) error {
	opts := []jetstream.StreamPurgeOpt{jetstream.WithPurgeSubject(j.kvSubj + key + "." + id + ".>")}
	if before != 0 {
		opts = append(opts, jetstream.WithPurgeSequence(before))
	}
	ctx, cancel := op(ctx)
	defer cancel()
	if err := j.kvStream.Purge(ctx, opts...); err != nil {
		return fmt.Errorf("purge blob %s: %w", id, err)
	}
	return nil
}

// dropBlobs purges the blobs a failed write wrote; no record names them.
func (j *JetStream) dropBlobs(ctx context.Context, key string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	ctx, cancel := call(context.WithoutCancel(ctx))
	defer cancel()
	var errs []error
	for _, id := range ids {
		errs = append(errs, j.purgeBlob(ctx, key, id, 0))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove the blobs of the failed write: %w", err)
	}
	return nil
}

// blobIDs returns the ids of key's blobs, each with the subject of one of its chunks.
func (j *JetStream) blobIDs(ctx context.Context, key string) (map[string]string, error) {
	ctx, cancel := op(ctx)
	defer cancel()
	info, err := j.kvStream.Info(ctx, jetstream.WithSubjectFilter(j.kvSubj+key+".>"))
	if err != nil {
		return nil, fmt.Errorf("list blobs: %w", err)
	}
	ids := map[string]string{}
	for subj := range info.State.Subjects {
		id, _, _ := strings.Cut(strings.TrimPrefix(subj, j.kvSubj+key+"."), ".")
		ids[id] = subj
	}
	return ids, nil
}

// collectBlobs purges, at Open, the blobs that no record names and that are older than
// blobGrace: what writers that crashed between a blob and its record, or between a record and
// the purge after it, left behind.
func (j *JetStream) collectBlobs(ctx context.Context) error {
	info, err := j.kvStream.Info(ctx, jetstream.WithSubjectFilter(j.kvSubj+"*.*.*"))
	if err != nil {
		return fmt.Errorf("list blobs: %w", err)
	}
	keys := map[string]bool{}
	for subj := range info.State.Subjects {
		key, _, _ := strings.Cut(strings.TrimPrefix(subj, j.kvSubj), ".")
		keys[key] = true
	}
	purged := 0
	for key := range keys {
		keep, err := j.recordBlobs(ctx, key)
		if err != nil {
			return err
		}
		ids, err := j.blobIDs(ctx, key)
		if err != nil {
			return err
		}
		for id, subj := range ids {
			if keep.names(id) {
				continue
			}
			m, err := j.kvStream.GetLastMsgForSubject(ctx, subj)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("read blob %s: %w", id, err)
			}
			if time.Since(m.Time) < j.opts.blobGrace {
				continue
			}
			// Old enough that no write in flight can name it: a write names only blobs it
			// wrote itself, or that the record it replaces names.
			if err := j.purgeBlob(ctx, key, id, 0); err != nil {
				return err
			}
			purged++
		}
	}
	if purged > 0 {
		j.log.Info("journal removed blobs no task names", "blobs", purged)
	}
	return nil
}

// recordBlobs returns the blobs the record of key names, without reading them (none when
// there is no record).
func (j *JetStream) recordBlobs(ctx context.Context, key string) (taskBlobs, error) {
	e, err := j.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return taskBlobs{}, nil
	}
	if err != nil {
		return taskBlobs{}, fmt.Errorf("read record %s: %w", key, err)
	}
	var refs struct {
		RequestBlob *blobRef `json:"requestBlob"`
		ResultBlob  *blobRef `json:"resultBlob"`
	}
	if err := json.Unmarshal(e.Value(), &refs); err != nil {
		return taskBlobs{}, fmt.Errorf("decode record %s: %w", key, err)
	}
	b := taskBlobs{key: key, rev: e.Revision()}
	if refs.RequestBlob != nil {
		b.request = *refs.RequestBlob
	}
	if refs.ResultBlob != nil {
		b.result = *refs.ResultBlob
	}
	return b, nil
}
