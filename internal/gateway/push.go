package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/agentplane/agentplane/internal/a2a"
	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/store"
)

// MaxPushConfigs bounds the push notification configs of one task (they live in its journal
// record).
const MaxPushConfigs = 10

// Defaults of PushOptions.
const (
	DefaultPushTimeout     = 10 * time.Second
	DefaultPushGiveUpAfter = 24 * time.Hour
)

// PushOptions configure push notifications. The gateway owns them: it answers the A2A push
// config methods itself, keeps the configs in the journal with their task, never shows them to
// agents, and POSTs each state change of a task to its configs' webhooks.
type PushOptions struct {
	// AllowedNetworks are address ranges webhooks may reach although they are not public
	// (loopback, private, link-local, CGNAT, ...); by default only public addresses.
	AllowedNetworks []netip.Prefix
	// Timeout bounds one POST (default DefaultPushTimeout).
	Timeout time.Duration
	// GiveUpAfter is how long a notification is retried (default DefaultPushGiveUpAfter).
	GiveUpAfter time.Duration
}

// servePushConfig answers the push notification config methods of both dialects from the
// journal, for a task the caller may see (any other answers TaskNotFound, as GetTask does).
func (g *Gateway) servePushConfig(c *call) outcome {
	d := c.req.Info.Dialect
	pr, err := a2a.ParsePushRequest(c.req.Params, c.req.Info)
	if err != nil {
		rpcError(c.w, http.StatusOK, c.req.ID, a2a.Errorf(a2a.CodeInvalidParams, "%v", err))
		return outcomeInvalid
	}
	t, ok := g.lookupTask(c, pr.TaskID)
	if !ok {
		return outcomeTaskNotFound
	}
	answer := func(result []byte) outcome {
		writeAnswer(c.w, nil, http.StatusOK, discovery.Endpoint{}, a2a.Result(c.req.ID, result))
		return outcomeJournal
	}
	switch c.req.Info.Kind {
	case a2a.KindPushSet:
		pc, err := g.pushConfig(c.r.Context(), pr.Config)
		if err != nil {
			rpcError(c.w, http.StatusOK, c.req.ID, a2a.Errorf(a2a.CodeInvalidParams, "%v", err))
			return outcomeInvalid
		}
		if o, ok := g.addPush(c, t, pc); !ok {
			return o
		}
		if t.State.Terminal() {
			// The task ended before the client asked: tell the new webhook how.
			if err := g.tasks.journal.store.Notify(c.r.Context(), t.ID, t.Revision); err != nil {
				g.log.Error("queueing a push notification failed", "task", t.ID, "err", err)
			}
		}
		return answer(a2a.PushConfigJSON(d, wireConfig(t.ID, pc)))
	case a2a.KindPushGet:
		for _, pc := range t.Push {
			if pc.ID == pr.ConfigID || pr.ConfigID == "" {
				return answer(a2a.PushConfigJSON(d, wireConfig(t.ID, pc)))
			}
		}
		rpcError(c.w, http.StatusOK, c.req.ID, a2a.Errorf(a2a.CodeInvalidParams, "task %q has no push notification config %q", t.ID, pr.ConfigID))
		return outcomeInvalid
	case a2a.KindPushList:
		list := make([]a2a.PushConfig, 0, len(t.Push))
		for _, pc := range t.Push {
			list = append(list, wireConfig(t.ID, pc))
		}
		return answer(a2a.PushConfigListJSON(d, list))
	}
	// Delete: deleting a config that is not there succeeds, as in the A2A SDKs.
	if slices.ContainsFunc(t.Push, func(pc store.PushConfig) bool { return pc.ID == pr.ConfigID }) {
		err := g.tasks.journal.editPush(c.r.Context(), t, func(ps []store.PushConfig) ([]store.PushConfig, error) {
			return slices.DeleteFunc(ps, func(pc store.PushConfig) bool { return pc.ID == pr.ConfigID }), nil
		})
		if err != nil {
			g.log.Error("task journal write failed", "task", t.ID, "err", err)
			rpcErrorFor(c.w, c.req.ID, errJournalRefusal)
			return outcomeJournalError
		}
	}
	return answer(a2a.PushDeletedJSON(d))
}

// pushConfig checks a config the client gave (its webhook URL against SSRF, see
// webhookPolicy) and returns it as the journal keeps it, with an id.
func (g *Gateway) pushConfig(ctx context.Context, c a2a.PushConfig) (store.PushConfig, error) {
	if err := a2a.CheckPushConfig(c); err != nil {
		return store.PushConfig{}, err
	}
	if err := g.webhooks.checkURL(ctx, c.URL); err != nil {
		return store.PushConfig{}, err
	}
	if c.ID == "" {
		c.ID = newID()
	}
	return store.PushConfig{ID: c.ID, URL: c.URL, Token: c.Token, AuthScheme: c.Scheme, Credentials: c.Credentials}, nil
}

// errTooManyPushConfigs refuses a config beyond MaxPushConfigs.
var errTooManyPushConfigs = fmt.Errorf("a task has at most %d push notification configs; delete one first", MaxPushConfigs)

// addPush stores pc with t (replacing the config of the same id), answering the call itself
// when it cannot.
func (g *Gateway) addPush(c *call, t *store.Task, pc store.PushConfig) (outcome, bool) {
	err := g.tasks.journal.editPush(c.r.Context(), t, func(ps []store.PushConfig) ([]store.PushConfig, error) {
		if i := slices.IndexFunc(ps, func(old store.PushConfig) bool { return old.ID == pc.ID }); i >= 0 {
			ps[i] = pc
			return ps, nil
		}
		if len(ps) >= MaxPushConfigs {
			return nil, errTooManyPushConfigs
		}
		return append(ps, pc), nil
	})
	switch {
	case err == nil:
		return "", true
	case errors.Is(err, errTooManyPushConfigs):
		rpcError(c.w, http.StatusOK, c.req.ID, a2a.Errorf(a2a.CodeInvalidParams, "%v", err))
		return outcomeInvalid, false
	}
	g.log.Error("task journal write failed", "task", t.ID, "err", err)
	rpcErrorFor(c.w, c.req.ID, errJournalRefusal)
	return outcomeJournalError, false
}

// takeSendPush takes the push notification config out of a send's params (the agent never
// sees it) and checks it, answering the call itself when it is refused.
func (g *Gateway) takeSendPush(c *call) (*store.PushConfig, bool) {
	params, wc, err := a2a.TakeSendPushConfig(c.req.Params, c.req.Info.Dialect)
	if err == nil && wc != nil {
		var pc store.PushConfig
		if pc, err = g.pushConfig(c.r.Context(), *wc); err == nil {
			c.req.Params = params
			return &pc, true
		}
	}
	if err != nil {
		rpcError(c.w, http.StatusOK, c.req.ID, a2a.Errorf(a2a.CodeInvalidParams, "%v", err))
		return nil, false
	}
	return nil, true
}

// wireConfig is a journal config of task id in the protocol's words.
func wireConfig(id string, pc store.PushConfig) a2a.PushConfig {
	return a2a.PushConfig{ID: pc.ID, TaskID: id, URL: pc.URL, Token: pc.Token, Scheme: pc.AuthScheme, Credentials: pc.Credentials}
}

// editPush changes t's push configs with edit and journals them by compare-and-set, re-reading
// t on a conflict. t becomes the stored task.
func (j *journal) editPush(ctx context.Context, t *store.Task, edit func([]store.PushConfig) ([]store.PushConfig, error)) error {
	for range 10 {
		ps, err := edit(slices.Clone(t.Push))
		if err != nil {
			return err
		}
		next := *t
		next.Push = ps
		err = j.retry(ctx, func() error { return j.store.Update(ctx, &next) })
		if err == nil {
			*t = next
			return nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
		fresh, gerr := j.store.Get(ctx, t.ID)
		if gerr != nil {
			return fmt.Errorf("%w: re-reading task after a conflict: %w", errJournal, gerr)
		}
		*t = *fresh
	}
	return fmt.Errorf("%w: task %s kept changing concurrently", errJournal, t.ID)
}
