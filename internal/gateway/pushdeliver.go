package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/agentplane/agentplane/internal/a2a"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/telemetry"
)

// Headers of a push notification POST.
const (
	// HeaderNotificationToken carries the config's token, as A2A asks.
	HeaderNotificationToken = "X-A2A-Notification-Token"
	// HeaderNotificationID identifies a notification: "<task id>:<journal revision>". It is the
	// same on every retry of one state of the task, so a receiver de-duplicates by it.
	HeaderNotificationID = "X-Agentplane-Notification-Id"
)

// Bounds of push notification delivery.
const (
	// pushWorkers bounds the notifications delivered at once.
	pushWorkers = 16
	// maxPushResponse is how much of a webhook's answer is read (and discarded) so that the
	// connection can be reused.
	maxPushResponse = 64 << 10
	// maxDeliveredEntries bounds the memory of what was delivered; past it, it starts over
	// (which costs duplicates, never losses).
	maxDeliveredEntries = 100_000
)

// pushRetry is the retry policy of push notifications: the first retry after first, doubling
// up to max apart, for at most giveUpAfter since the notification was queued.
type pushRetry struct {
	first, max, giveUpAfter time.Duration
}

func defaultPushRetry(giveUpAfter time.Duration) pushRetry {
	return pushRetry{first: time.Second, max: 5 * time.Minute, giveUpAfter: giveUpAfter}
}

// next is how long to wait after the delivery-th delivery of a notification queued at queued
// failed, at now; false when it is time to give up. The last retry comes at the give-up time,
// not after it.
func (r pushRetry) next(delivery int, queued, now time.Time) (time.Duration, bool) {
	deadline := queued.Add(r.giveUpAfter)
	if !now.Before(deadline) {
		return 0, false
	}
	d := r.first
	for i := 1; i < delivery && d < r.max; i++ {
		d *= 2
	}
	return min(d, r.max, deadline.Sub(now)), true
}

// pusher delivers the journal's queued push notifications: for each, it reads the task as the
// journal has it now and POSTs it to each of its push configs' webhooks. Delivery is at least
// once; the notification id header lets receivers drop duplicates.
type pusher struct {
	journal store.Journal
	client  *http.Client
	retries pushRetry
	metrics *telemetry.Metrics
	log     *slog.Logger
	now     func() time.Time

	mu sync.Mutex
	// delivered is the revision last delivered per task and config ("<task>\x00<config>"), so
	// that a retry, or a second notice of a revision already sent, does not POST again to the
	// webhooks that have it. It is bounded by maxDeliveredEntries.
	delivered map[string]uint64
}

// Start delivers notifications until ctx ends.
func (p *pusher) Start(ctx context.Context) error {
	err := p.journal.ConsumeNotifications(ctx, pushWorkers, p.deliver)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// deliver POSTs task n.TaskID to its webhooks that do not have its current revision yet. It
// returns nil when all have it (or when it gives up), and a *store.RetryError otherwise.
func (p *pusher) deliver(ctx context.Context, n store.Notice) error {
	t, err := p.journal.Get(ctx, n.TaskID)
	if errors.Is(err, store.ErrNotFound) {
		return nil // expired from the journal
	}
	if err != nil {
		return p.retry(n, "", 0, fmt.Errorf("reading the task: %w", err))
	}
	body := pushBody(t)
	id := t.ID + ":" + strconv.FormatUint(t.Revision, 10)
	failed := 0
	var last error
	for _, c := range t.Push {
		key := t.ID + "\x00" + c.ID
		if p.has(key, t.Revision) {
			continue
		}
		if err := p.post(ctx, c, id, body); err != nil {
			if ctx.Err() != nil {
				return store.RetryAfter(p.retries.first, ctx.Err()) // the gateway is stopping: no failure of the webhook's
			}
			failed++
			last = err
			p.metrics.PushNotification(t.Agent, telemetry.PushFailed)
			p.log.Info("push notification failed; will retry", "task", t.ID, "config", c.ID, "delivery", n.Delivery, "err", err)
			continue
		}
		p.mark(key, t.Revision)
		p.metrics.PushNotification(t.Agent, telemetry.PushSent)
	}
	if failed == 0 {
		return nil
	}
	return p.retry(n, t.Agent, failed, last)
}

// retry asks for n again after the policy's delay, or gives up on it.
func (p *pusher) retry(n store.Notice, agent string, failed int, err error) error {
	delay, ok := p.retries.next(n.Delivery, n.Queued, p.now())
	if ok {
		return store.RetryAfter(delay, err)
	}
	p.log.Warn("push notification given up", "task", n.TaskID, "deliveries", n.Delivery, "since", n.Queued, "err", err)
	for range max(failed, 1) {
		p.metrics.PushNotification(agent, telemetry.PushGivenUp)
	}
	return nil
}

// errWebhookStatus means the webhook answered, but not with 2xx.
var errWebhookStatus = errors.New("the webhook answered with a failure status")

// post sends one notification. Its error never holds the URL, which may carry a secret.
func (p *pusher) post(ctx context.Context, c store.PushConfig, id string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
	if err != nil {
		return errors.New("the webhook URL cannot be used")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderNotificationID, id)
	if c.Token != "" {
		req.Header.Set(HeaderNotificationToken, c.Token)
	}
	if c.AuthScheme != "" && c.Credentials != "" {
		req.Header.Set("Authorization", c.AuthScheme+" "+c.Credentials)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxPushResponse))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%w: HTTP %d", errWebhookStatus, resp.StatusCode)
	}
	return nil
}

// pushBody is what a notification carries: the task as GetTask answers it, in the task's
// dialect; in v1.0 wrapped as a StreamResponse ({"task": {...}}), in v0.3 the Task itself.
func pushBody(t *store.Task) []byte {
	return a2a.SendResult(a2a.Dialect(t.Dialect), taskView(t))
}

func (p *pusher) has(key string, rev uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.delivered[key]
	return ok && r >= rev
}

func (p *pusher) mark(key string, rev uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.delivered == nil || len(p.delivered) >= maxDeliveredEntries {
		p.delivered = map[string]uint64{}
	}
	p.delivered[key] = rev
}

// queuePush queues a push notification for t, just journaled, when its state changed from
// was and it has push configs. A failure is logged: the task's record is written, and the
// next change queues a notification of the task as it is then.
func (j *journal) queuePush(ctx context.Context, t *store.Task, was store.TaskState) {
	if len(t.Push) == 0 || t.State == was {
		return
	}
	if err := j.store.Notify(ctx, t.ID, t.Revision); err != nil {
		j.log.Error("queueing a push notification failed", "task", t.ID, "state", string(t.State), "err", err)
	}
}
