package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Sync policies for Options.Sync.
const (
	// SyncInterval lets the operating system write the journal to disk in the background; the
	// embedded server also fsyncs every two minutes. Acknowledged writes survive a crash of the
	// process but not of the machine.
	SyncInterval = "interval"
	// SyncAlways fsyncs every write before it is acknowledged: no acknowledged write is lost,
	// even on power loss. Each write costs a disk flush.
	SyncAlways = "always"
)

// Defaults for Options.
const (
	DefaultPrefix    = "agentplane"
	DefaultRetention = 7 * 24 * time.Hour
)

// Options configure a JetStream journal.
type Options struct {
	// URL of an external NATS server or cluster with JetStream enabled. Empty starts an embedded
	// server inside the process.
	URL string
	// DataDir holds the embedded server's files (in DataDir/jetstream). Required when URL is
	// empty; unused otherwise.
	DataDir string
	// Sync is SyncInterval (the default) or SyncAlways; see the package documentation. It
	// configures the embedded server only: an external server's sync policy is set in that
	// server's configuration (jetstream { sync_interval: always }).
	Sync string
	// Replicas of the task bucket and the queue stream on an external cluster; 3 is recommended
	// there. Default 1, the only value an embedded server accepts.
	Replicas int
	// Retention is how long a task is kept after it reaches a terminal state. Default 7 days.
	// Tasks that are not terminal are kept until they are.
	Retention time.Duration
	// Prefix names the bucket ("<prefix>_tasks"), the queue stream ("<prefix>_async"), its
	// subject ("<prefix>.async") and consumer ("<prefix>-dispatch"), so that several gateways
	// or tests can share a server. Letters, digits, '-' and '_'. Default "agentplane".
	Prefix string
	// CredsFile is a NATS .creds file for an external server (optional).
	CredsFile string
	// Token is an authentication token for an external server (optional).
	Token string
	// CAFile is a PEM file of CAs to verify an external server's TLS certificate (optional).
	CAFile string
	// EncryptionKey turns on encryption at rest for the embedded server: every stored task and
	// queue entry is encrypted with AES-GCM under keys derived from it. At least 32 bytes; keep
	// it apart from the data (a Kubernetes Secret, a file on another volume). A journal written
	// with one key is refused with another, or with none. An external server encrypts with its
	// own configuration (jetstream { cipher: aes, key: ... }); this option is an error there.
	EncryptionKey string
	// Limits bound the tasks the journal stores; zero fields take the defaults. Set
	// MaxRequestBytes to the gateway's request body limit when that is raised.
	Limits Limits
	// Logger receives connection and server events; never task contents. Default slog.Default().
	Logger *slog.Logger

	// Unexported knobs for tests.
	ackWait    time.Duration // how long a delivered id stays with its handler without news; default 10s
	retryDelay time.Duration // first redelivery delay after a handler error; default 1s
	pollWait   time.Duration // longest single pull request; default 5s
	blobGrace  time.Duration // longest write, for blob expiry and collection; default blobGrace
	maxPayload int32         // the embedded server's max_payload; default maxPayload
	chunkSize  int           // largest blob chunk; default and cap: the server's max payload less headers, at most blobChunkMax
}

// JetStream is a Journal backed by NATS JetStream: tasks in the KV bucket "<prefix>_tasks", the
// asynchronous queue in the work-queue stream "<prefix>_async" read through the durable pull
// consumer "<prefix>-dispatch". Create it with Open and release it with Close.
type JetStream struct {
	opts     Options
	log      *slog.Logger
	srv      *server.Server // nil for an external server
	nc       *nats.Conn
	closed   chan struct{} // closed when nc is closed
	js       jetstream.JetStream
	kv       jetstream.KeyValue
	kvSubj   string // "$KV.<bucket>."
	kvStream jetstream.Stream
	cons     jetstream.Consumer
	notify   jetstream.Consumer // push notifications

	kvStreamName string
	chunkSize    int // bytes of a blob chunk
	inlineMax    int // largest record kept whole in one message
	restMax      int // largest record without its request and result

	asyncSubject  string
	asyncStream   string
	notifySubject string
	notifyStream  string

	closeOnce sync.Once
	closeErr  error
}

var _ Journal = (*JetStream)(nil)

const (
	// opTimeout bounds every single request to the server when ctx has no earlier deadline.
	opTimeout = 10 * time.Second
	// callTimeout bounds one Create, Get or Update, which make one request per blob chunk, when
	// ctx has no earlier deadline.
	callTimeout = time.Minute
	// stateHeader carries the task state next to each record, so that Pending can skip terminal
	// tasks reading headers only.
	stateHeader = "Agentplane-State"
	// markerTTL is how long the bucket keeps the marker left when a terminal task expires.
	markerTTL = time.Hour
	// maxPayload is the embedded server's largest message. Larger tasks are stored in chunks
	// (see blob.go), so it bounds no task.
	maxPayload = 8 << 20
)

var prefixRe = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func (o *Options) setDefaults() error {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if !prefixRe.MatchString(o.Prefix) {
		return fmt.Errorf("store: prefix %q: only letters, digits, '-' and '_' are allowed", o.Prefix)
	}
	switch o.Sync {
	case "":
		o.Sync = SyncInterval
	case SyncInterval, SyncAlways:
	default:
		return fmt.Errorf("store: sync %q: must be %q or %q", o.Sync, SyncInterval, SyncAlways)
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Replicas < 0 || o.Replicas > 5 {
		return fmt.Errorf("store: replicas %d: must be between 1 and 5", o.Replicas)
	}
	if o.URL == "" {
		if o.DataDir == "" {
			return errors.New("store: dataDir is required for the embedded server")
		}
		if o.Replicas != 1 {
			return fmt.Errorf("store: replicas %d: the embedded server keeps one copy; use an external cluster", o.Replicas)
		}
	}
	if o.EncryptionKey != "" {
		if o.URL != "" {
			return errors.New("store: an encryption key applies to the embedded journal; an external server encrypts with its own configuration (jetstream { cipher: aes, key: ... })")
		}
		if err := CheckKey(o.EncryptionKey); err != nil {
			return fmt.Errorf("store: %w", err)
		}
	}
	if o.Retention == 0 {
		o.Retention = DefaultRetention
	}
	if o.Retention < time.Second {
		return fmt.Errorf("store: retention %s: must be at least 1s", o.Retention)
	}
	o.Limits = o.Limits.withDefaults()
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ackWait == 0 {
		o.ackWait = 10 * time.Second
	}
	if o.retryDelay == 0 {
		o.retryDelay = time.Second
	}
	if o.pollWait == 0 {
		o.pollWait = 5 * time.Second
	}
	if o.maxPayload == 0 {
		o.maxPayload = maxPayload
	}
	if o.blobGrace == 0 {
		o.blobGrace = blobGrace
	}
	return nil
}

// Open connects to JetStream (starting the embedded server first when opts.URL is empty) and
// creates or updates the task bucket, the queue stream and its consumer. ctx bounds the whole
// start-up.
func Open(ctx context.Context, opts Options) (*JetStream, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	j := &JetStream{
		opts:          opts,
		log:           opts.Logger.With("component", "store"),
		closed:        make(chan struct{}),
		asyncSubject:  opts.Prefix + ".async",
		asyncStream:   opts.Prefix + "_async",
		notifySubject: opts.Prefix + ".notify",
		notifyStream:  opts.Prefix + "_notify",
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	connOpts := []nats.Option{
		nats.Name("agentplane-gateway"),
		nats.MaxReconnects(-1),
		nats.ClosedHandler(func(*nats.Conn) { close(j.closed) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				j.log.Warn("journal connection lost", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			j.log.Info("journal connection restored", "server", nc.ConnectedUrlRedacted())
		}),
	}
	if dl, ok := ctx.Deadline(); ok {
		connOpts = append(connOpts, nats.Timeout(time.Until(dl)))
	}
	url := opts.URL
	if url == "" {
		srv, err := startEmbedded(ctx, opts, j.log)
		if err != nil {
			return nil, err
		}
		j.srv = srv
		connOpts = append(connOpts, nats.InProcessServer(srv))
	} else {
		if opts.Sync == SyncAlways {
			j.log.Warn("journal sync policy is set by the external server's configuration, not by the gateway")
		}
		if opts.CredsFile != "" {
			connOpts = append(connOpts, nats.UserCredentials(opts.CredsFile))
		}
		if opts.Token != "" {
			connOpts = append(connOpts, nats.Token(opts.Token))
		}
		if opts.CAFile != "" {
			connOpts = append(connOpts, nats.RootCAs(opts.CAFile))
		}
	}
	nc, err := nats.Connect(url, connOpts...)
	if err != nil {
		j.shutdownServer()
		return nil, fmt.Errorf("store: connect to JetStream: %w", err)
	}
	j.nc = nc
	if err := j.setupRetrying(ctx); err != nil {
		_ = j.Close()
		return nil, err
	}
	if err := j.collectBlobs(ctx); err != nil {
		// Housekeeping: the journal works without it, and the next start tries again.
		j.log.Warn("journal could not remove blobs no task names", "err", err)
	}
	return j, nil
}

// setupAttempt bounds one attempt of setup: a JetStream cluster that has just started may drop
// the first API requests while it elects its leaders, and a dropped request would otherwise
// wait for the whole start-up deadline.
const setupAttempt = 5 * time.Second

// setupRetrying runs setup until it succeeds or ctx ends.
func (j *JetStream) setupRetrying(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, setupAttempt)
		err := j.setup(actx)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		j.log.Info("JetStream not ready yet; trying again", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// setup creates or updates the bucket, the stream and the consumer.
func (j *JetStream) setup(ctx context.Context) error {
	js, err := jetstream.New(j.nc)
	if err != nil {
		return fmt.Errorf("store: jetstream: %w", err)
	}
	j.js = js
	bucket := j.opts.Prefix + "_tasks"
	// No bucket TTL: a task that is not terminal must never expire. Terminal records carry
	// their own TTL (Nats-TTL header, needs nats-server 2.11 or later); LimitMarkerTTL turns
	// per-message TTLs on for the bucket.
	j.kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:         bucket,
		Description:    "agentplane task journal",
		History:        1,
		Storage:        jetstream.FileStorage,
		Replicas:       j.opts.Replicas,
		MaxValueSize:   -1,
		LimitMarkerTTL: markerTTL,
	})
	if err != nil {
		return fmt.Errorf("store: create bucket %s: %w", bucket, err)
	}
	j.kvSubj = "$KV." + bucket + "."
	j.kvStreamName = "KV_" + bucket
	if j.kvStream, err = js.Stream(ctx, j.kvStreamName); err != nil {
		return fmt.Errorf("store: bucket %s: %w", bucket, err)
	}
	// The server tells its max payload on connecting: 1 MiB unless configured otherwise.
	room := int(j.nc.MaxPayload()) - msgHeadroom
	if room < 64<<10 {
		return fmt.Errorf("store: the server's max_payload of %d bytes is too small for the journal; it needs at least %d", j.nc.MaxPayload(), 64<<10+msgHeadroom)
	}
	j.chunkSize = min(room, blobChunkMax)
	if j.opts.chunkSize > 0 {
		j.chunkSize = min(room, j.opts.chunkSize)
	}
	j.inlineMax = j.chunkSize
	j.restMax = min(MaxRecordBytes, room)

	// The queue: no age or size limit, so a queued id stays until a handler finishes it.
	j.cons, err = j.workQueue(ctx, j.asyncStream, j.asyncSubject, j.opts.Prefix+"-dispatch", "asynchronous task queue", "asynchronous dispatch")
	if err != nil {
		return err
	}
	return j.setupNotify(ctx)
}

// workQueue creates or updates a work-queue stream with no age or size limit (an entry stays
// until a handler finishes it) and its durable pull consumer, which redelivers without end.
func (j *JetStream) workQueue(ctx context.Context, stream, subject, durable, streamDesc, consumerDesc string) (jetstream.Consumer, error) {
	_, err := j.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        stream,
		Description: "agentplane " + streamDesc,
		Subjects:    []string{subject},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    j.opts.Replicas,
		Duplicates:  2 * time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("store: create stream %s: %w", stream, err)
	}
	c, err := j.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   "agentplane " + consumerDesc,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       j.opts.ackWait,
		MaxDeliver:    -1,
		MaxAckPending: -1,
		Replicas:      j.opts.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("store: create consumer %s: %w", durable, err)
	}
	return c, nil
}

// Limits returns the limits Create and Update enforce.
func (j *JetStream) Limits() Limits { return j.opts.Limits }

// Conn is the journal's NATS connection, which the gateway's fleet membership shares. Close
// closes it.
func (j *JetStream) Conn() *nats.Conn { return j.nc }

// Close drains the connection (pending acknowledgements and publishes are sent) and stops the
// embedded server, waiting for it to finish. Cancel the contexts of running Consume calls
// first: Consume fails once the journal is closed.
func (j *JetStream) Close() error {
	j.closeOnce.Do(func() {
		if j.nc != nil {
			if err := j.nc.Drain(); err != nil {
				j.closeErr = fmt.Errorf("store: drain the journal connection: %w", err)
				j.nc.Close()
			}
			select {
			case <-j.closed:
			case <-time.After(opTimeout):
				j.nc.Close()
				j.closeErr = errors.New("store: timed out draining the journal connection")
			}
		}
		j.shutdownServer()
	})
	return j.closeErr
}

func (j *JetStream) shutdownServer() {
	if j.srv != nil {
		j.srv.Shutdown()
		j.srv.WaitForShutdown()
	}
}

// op returns a context for one request to the server.
func op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, opTimeout)
}

// call returns a context for one Create, Get or Update.
func call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, callTimeout)
}

// lazyCall is call's context for a Create or Update, made only when the call makes a second
// request: a record written alone, the usual write, is one request that op bounds already, and
// needs no second timer.
type lazyCall struct {
	parent context.Context
	ctx    context.Context
	cancel context.CancelFunc
}

// get returns the call's context, making it the first time.
func (l *lazyCall) get() context.Context {
	if l.ctx == nil {
		l.ctx, l.cancel = call(l.parent)
	}
	return l.ctx
}

// current returns the call's context if it was made, else its parent: for the call's first
// request, op(current()) has the deadline op(get()) would have, since opTimeout < callTimeout.
func (l *lazyCall) current() context.Context {
	if l.ctx == nil {
		return l.parent
	}
	return l.ctx
}

func (l *lazyCall) stop() {
	if l.cancel != nil {
		l.cancel()
	}
}

// Create implements Journal.
func (j *JetStream) Create(ctx context.Context, t *Task) error {
	key, err := encodeKey(t.ID)
	if err != nil {
		return err
	}
	lc := &lazyCall{parent: ctx}
	defer lc.stop()
	// The key may hold the marker an expired task left behind: then the id is free again and
	// the write must expect the marker's revision.
	var expect uint64
	for range 3 {
		rev, err := j.write(lc, key, t, expect, taskBlobs{})
		if err == nil {
			t.Revision = rev
			return nil
		}
		if !isWrongLastSeq(err) {
			return fmt.Errorf("store: create %s: %w", t.ID, err)
		}
		octx, cancel := op(lc.get())
		last, err := j.kvStream.GetLastMsgForSubject(octx, j.kvSubj+key)
		cancel()
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			expect = 0 // the marker itself expired meanwhile
		case err != nil:
			return fmt.Errorf("store: create %s: %w", t.ID, err)
		case isMarker(last.Header):
			expect = last.Sequence
		default:
			return fmt.Errorf("store: create %s: %w", t.ID, ErrExists)
		}
	}
	return fmt.Errorf("store: create %s: %w", t.ID, ErrConflict)
}

// isMarker reports whether a bucket message's headers make it a delete marker, not a task.
func isMarker(h nats.Header) bool {
	return h.Get(jetstream.MarkerReasonHeader) != "" || h.Get("KV-Operation") != ""
}

// Get implements Journal.
func (j *JetStream) Get(ctx context.Context, id string) (*Task, error) {
	key, err := encodeKey(id)
	if err != nil {
		return nil, err
	}
	ctx, cancel := call(ctx)
	defer cancel()
	return j.get(ctx, id, key)
}

func (j *JetStream) get(ctx context.Context, id, key string) (*Task, error) {
	var last uint64
	for {
		octx, cancel := op(ctx)
		e, err := j.kv.Get(octx, key)
		cancel()
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			return nil, fmt.Errorf("store: get %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("store: get %s: %w", id, err)
		}
		t, err := j.decode(ctx, key, e.Value(), e.Revision())
		if errors.Is(err, errBlobMissing) && e.Revision() != last {
			// Replaced since it was read, and the blobs it named purged: read the new one.
			last = e.Revision()
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("store: get %s: %w", id, err)
		}
		return t, nil
	}
}

// Update implements Journal.
func (j *JetStream) Update(ctx context.Context, t *Task) error {
	key, err := encodeKey(t.ID)
	if err != nil {
		return err
	}
	lc := &lazyCall{parent: ctx}
	defer lc.stop()
	if t.Revision == 0 {
		// Expecting revision 0 would create the record; Update never does.
		if _, err := j.get(lc.get(), t.ID, key); err != nil {
			return fmt.Errorf("store: update %s: %w", t.ID, ErrNotFound)
		}
		return fmt.Errorf("store: update %s at revision 0: %w", t.ID, ErrConflict)
	}
	rev, err := j.write(lc, key, t, t.Revision, t.blobs)
	if isWrongLastSeq(err) {
		if _, gerr := j.get(lc.get(), t.ID, key); errors.Is(gerr, ErrNotFound) {
			return fmt.Errorf("store: update %s: %w", t.ID, ErrNotFound)
		}
		return fmt.Errorf("store: update %s at revision %d: %w", t.ID, t.Revision, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("store: update %s: %w", t.ID, err)
	}
	t.Revision = rev
	return nil
}

// write publishes t's record if the key's last revision is still rev (0: no record), with the
// state header, and with the retention TTL when t is terminal. base are the blobs of the record
// at rev, which t may keep. Nothing is stored when it fails.
func (j *JetStream) write(lc *lazyCall, key string, t *Task, rev uint64, base taskBlobs) (uint64, error) {
	if err := j.opts.Limits.check(t); err != nil {
		return 0, err
	}
	data, blobs, written, err := j.encode(lc, key, t, base)
	if err != nil {
		return 0, joinCleanup(err, j.dropWritten(lc, key, written))
	}
	msg := &nats.Msg{Subject: j.kvSubj + key, Data: data, Header: nats.Header{}}
	setEntryHeaders(msg.Header, t)
	popts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(rev)}
	if t.State.Terminal() {
		popts = append(popts, jetstream.WithMsgTTL(j.opts.Retention))
	}
	octx, cancel := op(lc.current())
	pa, err := j.js.PublishMsg(octx, msg, popts...)
	cancel()
	if err != nil {
		return 0, joinCleanup(err, j.dropWritten(lc, key, written))
	}
	if !blobs.empty() {
		blobs.rev = pa.Sequence
	}
	old := t.blobs
	t.blobs = blobs
	if !old.empty() || !blobs.empty() {
		// The record is stored: a failure here only delays the removal of replaced blobs to the
		// next write of the task or the next start.
		if err := j.purgeBlobs(lc.get(), key, blobs, pa.Sequence); err != nil {
			j.log.Warn("journal could not remove a task's replaced blobs", "task", t.ID, "err", err)
		}
	}
	return pa.Sequence, nil
}

// dropWritten purges the blobs a failed write wrote, if it wrote any.
func (j *JetStream) dropWritten(lc *lazyCall, key string, written []string) error {
	if len(written) == 0 {
		return nil
	}
	return j.dropBlobs(lc.get(), key, written)
}

// joinCleanup returns err, with cleanup's failure attached when there was one.
func joinCleanup(err, cleanup error) error {
	if cleanup == nil {
		return err
	}
	return errors.Join(err, cleanup)
}

func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Pending implements Journal. Tasks come oldest first.
//
// Cost: one pass over the headers of the newest record of every key in the bucket (about 150
// bytes each, terminal tasks within their retention included), then one read per task that is
// not terminal, 16 at a time. With 100k records and 1k pending tasks this moves ~15 MB of
// headers plus the pending records, not the requests and results of finished tasks.
func (j *JetStream) Pending(ctx context.Context) ([]*Task, error) {
	keys, err := j.pendingKeys(ctx)
	if err != nil {
		return nil, err
	}
	var out []*Task
	err = j.readTasks(ctx, keys, func(t *Task) {
		if !t.State.Terminal() {
			out = append(out, t)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("store: pending: %w", err)
	}
	sortTasks(out)
	return out, nil
}

// readTasks reads the tasks of keys, 16 at a time, and calls each (one call at a time) with
// every one that still exists: a task expired since its key was listed, or a key this package
// did not write, is skipped. It returns the first failure, or ctx's error.
func (j *JetStream) readTasks(ctx context.Context, keys []string, each func(*Task)) error {
	const workers = 16
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	work := make(chan string)
	for range min(workers, len(keys)) {
		wg.Go(func() {
			for key := range work {
				id, err := decodeKey(key)
				var t *Task
				if err == nil {
					octx, cancel := call(ctx)
					t, err = j.get(octx, id, key)
					cancel()
				}
				mu.Lock()
				switch {
				case errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalidID):
					// Expired since the scan, or a key this package did not write.
				case err != nil:
					if first == nil {
						first = err
					}
				default:
					each(t)
				}
				mu.Unlock()
			}
		})
	}
	for _, k := range keys {
		if ctx.Err() != nil {
			break
		}
		work <- k
	}
	close(work)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// pendingKeys lists the keys whose newest record is not marked terminal, reading headers only.
func (j *JetStream) pendingKeys(ctx context.Context) ([]string, error) {
	var keys []string
	err := j.scanHeaders(ctx, func(key string, h nats.Header) {
		if s := h.Get(stateHeader); s == "" || !TaskState(s).Terminal() {
			keys = append(keys, key)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("store: pending: %w", err)
	}
	return keys, nil
}

// Enqueue implements Journal. Enqueueing an id that is already waiting and has never been
// delivered does nothing (within the stream's two-minute duplicate window; after it, the id may
// be queued twice). An id that was delivered before, even if its handler is still running or
// it waits to be retried, is queued once more, so a delivery that starts after Enqueue returns
// is guaranteed.
func (j *JetStream) Enqueue(ctx context.Context, id string) error {
	key, err := encodeKey(id)
	if err != nil {
		return err
	}
	ctx, cancel := op(ctx)
	defer cancel()
	pa, err := j.publishID(ctx, id, key)
	if err != nil {
		return fmt.Errorf("store: enqueue %s: %w", id, err)
	}
	if !pa.Duplicate {
		return nil
	}
	info, err := j.cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("store: enqueue %s: %w", id, err)
	}
	if pa.Sequence > info.Delivered.Stream {
		return nil // the earlier copy has not been delivered yet
	}
	if _, err := j.publishID(ctx, id, key+"."+nuid.Next()); err != nil {
		return fmt.Errorf("store: enqueue %s: %w", id, err)
	}
	return nil
}

func (j *JetStream) publishID(ctx context.Context, id, msgID string) (*jetstream.PubAck, error) {
	return j.js.PublishMsg(ctx, &nats.Msg{Subject: j.asyncSubject, Data: []byte(id)},
		jetstream.WithMsgID(msgID), jetstream.WithExpectStream(j.asyncStream))
}

// errClosed is returned by Consume when the journal was closed under it.
var errClosed = errors.New("store: journal closed")

// Consume implements Journal. Each delivered id keeps the consumer's ack wait (10s) extended
// while its handler runs; a handler error sends it back with a delay that doubles per delivery
// (1s, 2s, 4s, ... at most 10s). Within one process an id is never handled twice at once;
// a second copy is sent back until the first returns. Across gateways sharing a consumer, the
// caller's compare-and-set on the task decides.
func (j *JetStream) Consume(ctx context.Context, max int, handle func(ctx context.Context, id string) error) error {
	return j.consume(ctx, j.cons, max, func(ctx context.Context, m jetstream.Msg, id string) error { return handle(ctx, id) })
}

// consume fetches messages of cons and runs handle on each, at most max at once and never two
// with the same data (a task id) at once; see Consume.
func (j *JetStream) consume(ctx context.Context, cons jetstream.Consumer, max int, handle func(ctx context.Context, m jetstream.Msg, id string) error) error {
	if max < 1 {
		max = 1
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		running = map[string]bool{}
	)
	defer wg.Wait()
	slots := make(chan struct{}, max) // one token per running handler
	var failures int
	for {
		// Wait for at least one free slot, then take all that are free.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		free := 1
	more:
		for free < max {
			select {
			case slots <- struct{}{}:
				free++
			default:
				break more
			}
		}
		fctx, cancel := context.WithTimeout(ctx, j.opts.pollWait)
		batch, err := cons.Fetch(free, jetstream.FetchContext(fctx))
		if err == nil {
			for m := range batch.Messages() {
				free--
				if ctx.Err() != nil {
					// Give it back at once to whoever consumes next; failing that, it comes back
					// after the ack wait.
					if err := m.Nak(); err != nil {
						j.log.Warn("journal nak failed; the task will be delivered after the ack wait", "err", err)
					}
					<-slots
					continue
				}
				wg.Go(func() {
					defer func() { <-slots }()
					id := string(m.Data())
					mu.Lock()
					busy := running[id]
					running[id] = true
					mu.Unlock()
					if busy {
						if err := m.NakWithDelay(j.opts.retryDelay); err != nil {
							j.log.Warn("journal nak failed; the task will be delivered after the ack wait", "task", id, "err", err)
						}
						return
					}
					j.handle(ctx, m, id, handle)
					mu.Lock()
					delete(running, id)
					mu.Unlock()
				})
			}
			err = batch.Error()
		}
		cancel()
		for range free {
			<-slots
		}
		if ctx.Err() != nil {
			return nil
		}
		if j.nc.IsClosed() || j.nc.IsDraining() {
			return errClosed
		}
		if err == nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) {
			failures = 0
			continue
		}
		// The server is unreachable or the consumer is gone: back off and try again.
		failures++
		j.log.Warn("journal fetch failed", "err", err, "failures", failures)
		t := time.NewTimer(retryBackoff(100*time.Millisecond, failures))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		}
	}
}

// handle runs one handler, keeping the message's ack deadline extended while it runs, then acks
// or naks it.
func (j *JetStream) handle(ctx context.Context, m jetstream.Msg, id string, handle func(ctx context.Context, m jetstream.Msg, id string) error) {
	stop := make(chan struct{})
	var keep sync.WaitGroup
	keep.Go(func() {
		t := time.NewTicker(j.opts.ackWait / 3)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if err := m.InProgress(); err != nil {
					j.log.Warn("journal could not extend a task's ack wait; it may be delivered again", "task", id, "err", err)
				}
			case <-stop:
				return
			}
		}
	})
	err := handle(ctx, m, id)
	close(stop)
	keep.Wait()

	actx, cancel := op(context.WithoutCancel(ctx))
	defer cancel()
	if err == nil {
		// Wait for the server to confirm, so that a Close right after does not lose the ack.
		if aerr := m.DoubleAck(actx); aerr != nil {
			j.log.Warn("journal ack failed; the task will be delivered again", "task", id, "err", aerr)
		}
		return
	}
	attempt := 1
	if md, merr := m.Metadata(); merr == nil {
		attempt = int(md.NumDelivered)
	}
	delay := redeliveryDelay(err, j.opts.retryDelay, attempt)
	j.log.Info("queue handler failed; will retry", "task", id, "attempt", attempt, "delay", delay, "err", err)
	if nerr := m.NakWithDelay(delay); nerr != nil {
		j.log.Warn("journal nak failed; the task will be delivered after the ack wait", "task", id, "err", nerr)
	}
}
