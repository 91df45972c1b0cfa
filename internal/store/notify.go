package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// PushConfig is where a task's client wants to hear of the task's changes: an A2A push
// notification config, stored with the task. Token and Credentials are secrets.
type PushConfig struct {
	ID  string `json:"id"`
	URL string `json:"url"`
	// Token is sent back in the X-A2A-Notification-Token header, so that the receiver knows
	// the notification comes from the gateway it gave the token to.
	Token string `json:"token,omitempty"`
	// AuthScheme and Credentials authenticate the gateway to the receiver (Bearer, Basic).
	AuthScheme  string `json:"authScheme,omitempty"`
	Credentials string `json:"credentials,omitempty"`
}

// Notice is one queued push notification: task TaskID changed. The handler reads the task as
// it is when it runs, so a late delivery sends the latest state, never an older one.
type Notice struct {
	TaskID string
	// Revision is the task's revision when the notice was queued.
	Revision uint64
	// Delivery counts the deliveries of this notice, 1 for the first.
	Delivery int
	// Queued is when the notice was first queued.
	Queued time.Time
}

// RetryError is a handler's answer asking for the notice to be delivered again after Delay.
type RetryError struct {
	Delay time.Duration
	Err   error
}

func (e *RetryError) Error() string { return fmt.Sprintf("retry after %s: %v", e.Delay, e.Err) }

// Unwrap returns the handler's error.
func (e *RetryError) Unwrap() error { return e.Err }

// RetryAfter returns a *RetryError: deliver the notice again after d, because of err.
func RetryAfter(d time.Duration, err error) error { return &RetryError{Delay: d, Err: err} }

// redeliveryDelay is how long a queue waits before delivering again after a handler's error:
// the delay the handler asked for, or backoff from base for the delivery-th failure.
func redeliveryDelay(err error, base time.Duration, delivery int) time.Duration {
	var re *RetryError
	if errors.As(err, &re) && re.Delay > 0 {
		return re.Delay
	}
	return retryBackoff(base, delivery)
}

// revisionHeader carries a notice's task revision.
const revisionHeader = "Agentplane-Revision"

// setupNotify creates or updates the push notification queue: the work-queue stream
// "<prefix>_notify" (subject "<prefix>.notify") read through the durable pull consumer
// "<prefix>-notify". Like the task queue it has no age or size limit: a notice stays until a
// handler finishes it (delivers it, or gives up on it).
func (j *JetStream) setupNotify(ctx context.Context) error {
	var err error
	j.notify, err = j.workQueue(ctx, j.notifyStream, j.notifySubject, j.opts.Prefix+"-notify", "push notification queue", "push notifications")
	return err
}

// Notify implements Journal. A notice of the same id and revision published within the
// stream's two-minute duplicate window is dropped: either it waits, or it was delivered.
func (j *JetStream) Notify(ctx context.Context, id string, rev uint64) error {
	key, err := encodeKey(id)
	if err != nil {
		return err
	}
	ctx, cancel := op(ctx)
	defer cancel()
	msg := &nats.Msg{Subject: j.notifySubject, Data: []byte(id), Header: nats.Header{}}
	msg.Header.Set(revisionHeader, strconv.FormatUint(rev, 10))
	_, err = j.js.PublishMsg(ctx, msg, jetstream.WithMsgID(key+"."+strconv.FormatUint(rev, 10)), jetstream.WithExpectStream(j.notifyStream))
	if err != nil {
		return fmt.Errorf("store: notify %s: %w", id, err)
	}
	return nil
}

// ConsumeNotifications implements Journal, with Consume's ack wait and redelivery; a
// *RetryError from handle sets the delay before the next delivery.
func (j *JetStream) ConsumeNotifications(ctx context.Context, max int, handle func(ctx context.Context, n Notice) error) error {
	return j.consume(ctx, j.notify, max, func(ctx context.Context, m jetstream.Msg, id string) error {
		n := Notice{TaskID: id, Delivery: 1}
		if rev, err := strconv.ParseUint(m.Headers().Get(revisionHeader), 10, 64); err == nil {
			n.Revision = rev
		}
		if md, err := m.Metadata(); err == nil {
			n.Delivery, n.Queued = int(md.NumDelivered), md.Timestamp
		}
		return handle(ctx, n)
	})
}
