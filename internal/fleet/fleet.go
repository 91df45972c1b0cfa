package fleet

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults for Options.
const (
	DefaultInterval = time.Second
	// DefaultMissed is how many heartbeats in a row a member may miss before it is taken for
	// dead: its lease is then over and its unfinished tasks may be claimed.
	DefaultMissed = 3
	DefaultPrefix = "agentplane"
)

// Load is what a gateway can serve of one agent, as it reports it in its heartbeat.
type Load struct {
	// Ready is the number of ready replicas at the gateway's site.
	Ready int `json:"ready"`
	// Slots is the tasks those replicas take at once (ready × maxConcurrency).
	Slots int `json:"slots"`
	// InFlight is the tasks they run now; Queued the tasks waiting for one of them.
	InFlight int `json:"inFlight"`
	Queued   int `json:"queued"`
	// LatencyMs is the recent task duration on those replicas, in milliseconds (0: unknown).
	LatencyMs float64 `json:"latencyMs,omitempty"`
	// State ("stateless" or "stateful"), MaxConcurrency and AllowedSites describe the agent, so
	// that a gateway that does not run it can still route to it and respect its residency.
	State          string   `json:"state,omitempty"`
	MaxConcurrency int      `json:"maxConcurrency,omitempty"`
	AllowedSites   []string `json:"allowedSites,omitempty"`
}

// Free is how many more tasks the agent's replicas take before tasks wait.
func (l Load) Free() int { return max(l.Slots-l.InFlight-l.Queued, 0) }

// Heartbeat is what a gateway publishes about itself every Options.Interval.
type Heartbeat struct {
	ID   string `json:"id"`
	Site string `json:"site,omitempty"`
	// URL is where peer gateways send it tasks (empty: it takes none from peers).
	URL string `json:"url,omitempty"`
	// Journal names the task journal the gateway writes: gateways with the same journal take
	// over each other's tasks.
	Journal string    `json:"journal"`
	Started time.Time `json:"started"`
	Sent    time.Time `json:"sent"`
	// Interval is the sender's heartbeat period: it is taken for dead after Missed of them.
	Interval time.Duration   `json:"interval"`
	Agents   map[string]Load `json:"agents,omitempty"`
	// Draining is set while the gateway stops: it takes no new tasks.
	Draining bool `json:"draining,omitempty"`
}

// Member is a gateway of the fleet as this gateway sees it.
type Member struct {
	Heartbeat
	// Self is this gateway.
	Self bool `json:"self,omitempty"`
	// LastSeen is when this gateway last heard from it (its own clock).
	LastSeen time.Time `json:"lastSeen"`
	// RTT is the round trip of the last ping over NATS (0: not measured yet, or Self).
	RTT time.Duration `json:"rtt,omitempty"`
}

// Options configure a Fleet.
type Options struct {
	// Conn is a connection to the NATS system the fleet shares. Required. The Fleet does not
	// close it.
	Conn *nats.Conn
	// ID names this gateway in the fleet: stable across restarts, so that it takes its own
	// unfinished tasks back. Required; letters, digits, '-', '_' and '.'.
	ID string
	// Site is this gateway's site.
	Site string
	// URL is where peers send this gateway tasks; empty takes none.
	URL string
	// Prefix names the heartbeat subjects ("<prefix>.fleet.>") and the KV bucket
	// ("<prefix>_fleet"). Default DefaultPrefix.
	Prefix string
	// Interval is the heartbeat period; a member is taken for dead after Missed of its own
	// periods without a heartbeat. Defaults DefaultInterval and DefaultMissed.
	Interval time.Duration
	Missed   int
	// Load returns what this gateway serves now; called once per heartbeat.
	Load func() map[string]Load
	// Draining reports whether this gateway is stopping.
	Draining func() bool
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

var idRe = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// Fleet is this gateway's membership in a fleet of gateways over NATS: it publishes its
// heartbeat (on a subject, which crosses leaf-node links, and into a KV bucket with a TTL in its
// own JetStream domain) and keeps the view of every member it hears from.
type Fleet struct {
	opts    Options
	log     *slog.Logger
	journal string
	started time.Time
	kv      jetstream.KeyValue
	sub     *nats.Subscription
	byes    *nats.Subscription
	pings   *nats.Subscription

	mu      sync.Mutex
	members map[string]*Member
	changed chan struct{}
	// left receives the ids of members of this journal that stopped sending heartbeats.
	left chan string
}

// New joins the fleet: it creates (or reuses) the KV bucket and starts listening to heartbeats.
// Call Start to send heartbeats.
func New(ctx context.Context, opts Options) (*Fleet, error) {
	if opts.Conn == nil {
		return nil, errors.New("fleet: Options.Conn is required")
	}
	if !idRe.MatchString(opts.ID) {
		return nil, fmt.Errorf("fleet: gateway id %q: use 1 to 128 letters, digits, '-', '_' or '.'", opts.ID)
	}
	opts.Prefix = cmp.Or(opts.Prefix, DefaultPrefix)
	opts.Interval = cmp.Or(opts.Interval, DefaultInterval)
	opts.Missed = cmp.Or(opts.Missed, DefaultMissed)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Load == nil {
		opts.Load = func() map[string]Load { return nil }
	}
	if opts.Draining == nil {
		opts.Draining = func() bool { return false }
	}
	f := &Fleet{opts: opts, log: opts.Logger.With("component", "fleet"), started: opts.Now(),
		members: map[string]*Member{}, changed: make(chan struct{}), left: make(chan string, 64)}
	js, err := jetstream.New(opts.Conn)
	if err != nil {
		return nil, fmt.Errorf("fleet: jetstream: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	info, err := js.AccountInfo(ctx)
	if err != nil {
		return nil, fmt.Errorf("fleet: JetStream account: %w", err)
	}
	f.journal = info.Domain + "/" + opts.Prefix
	bucket := opts.Prefix + "_fleet"
	f.kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "agentplane gateways: one heartbeat per gateway, gone when it stops sending",
		History:     1,
		TTL:         time.Duration(opts.Missed) * opts.Interval,
		Storage:     jetstream.MemoryStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("fleet: bucket %s: %w", bucket, err)
	}
	f.sub, err = opts.Conn.Subscribe(f.subject("hb", "*"), f.heard)
	if err != nil {
		return nil, fmt.Errorf("fleet: subscribe to heartbeats: %w", err)
	}
	f.byes, err = opts.Conn.Subscribe(f.subject("bye", "*"), f.bye)
	if err == nil {
		f.pings, err = opts.Conn.Subscribe(f.subject("ping", opts.ID), func(m *nats.Msg) { _ = m.Respond(nil) })
	}
	if err != nil {
		f.unsubscribe()
		return nil, fmt.Errorf("fleet: subscribe: %w", err)
	}
	return f, nil
}

func (f *Fleet) subject(kind, id string) string { return f.opts.Prefix + ".fleet." + kind + "." + id }

// ID is this gateway's id; Site its site; Journal the journal it writes.
func (f *Fleet) ID() string      { return f.opts.ID }
func (f *Fleet) Site() string    { return f.opts.Site }
func (f *Fleet) Journal() string { return f.journal }

// Interval is the heartbeat period.
func (f *Fleet) Interval() time.Duration { return f.opts.Interval }

// Report sets what the heartbeats say of this gateway: its load, and whether it drains. Call it
// before Start.
func (f *Fleet) Report(load func() map[string]Load, draining func() bool) {
	f.opts.Load, f.opts.Draining = load, draining
}

// heard records a heartbeat.
func (f *Fleet) heard(m *nats.Msg) {
	var hb Heartbeat
	if err := json.Unmarshal(m.Data, &hb); err != nil || !idRe.MatchString(hb.ID) {
		f.log.Debug("ignoring a malformed heartbeat", "subject", m.Subject)
		return
	}
	f.mu.Lock()
	old, known := f.members[hb.ID]
	mem := &Member{Heartbeat: hb, Self: hb.ID == f.opts.ID, LastSeen: f.opts.Now()}
	if known {
		mem.RTT = old.RTT
	}
	f.members[hb.ID] = mem
	f.notifyLocked()
	f.mu.Unlock()
	if !known && hb.ID != f.opts.ID {
		f.log.Info("gateway joined the fleet", "gateway", hb.ID, "site", hb.Site)
	}
}

func (f *Fleet) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// Changed returns a channel closed at the next change of the view (every heartbeat heard).
func (f *Fleet) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// Left delivers the id of each member of this gateway's journal that stopped sending
// heartbeats (or said it stopped): its leases are over.
func (f *Fleet) Left() <-chan string { return f.left }

// alive reports whether m's lease holds at now.
func (f *Fleet) alive(m *Member, now time.Time) bool {
	if m.Self {
		return true
	}
	period := cmp.Or(m.Interval, f.opts.Interval)
	return now.Sub(m.LastSeen) <= time.Duration(f.opts.Missed)*period
}

// Members returns the live members, this gateway first, then by site and id.
func (f *Fleet) Members() []Member {
	now := f.opts.Now()
	f.mu.Lock()
	out := make([]Member, 0, len(f.members))
	for _, m := range f.members {
		if f.alive(m, now) {
			out = append(out, *m)
		}
	}
	f.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int {
		if a.Self != b.Self {
			if a.Self {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(a.Site, b.Site), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// Alive reports whether the gateway id holds its leases: it is this gateway, or it sent a
// heartbeat recently.
func (f *Fleet) Alive(id string) bool {
	if id == f.opts.ID {
		return true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.members[id]
	return ok && f.alive(m, f.opts.Now())
}

// SettleTime is how long after it starts this gateway has listened long enough to know every
// live member: a member it has not heard from by then is dead, and its tasks may be claimed.
func (f *Fleet) SettleTime() time.Duration { return time.Duration(f.opts.Missed+1) * f.opts.Interval }

// Settled reports whether SettleTime has passed since this gateway started.
func (f *Fleet) Settled() bool { return f.opts.Now().Sub(f.started) > f.SettleTime() }

// Start sends a heartbeat every Interval, pings the peers and notices members that leave,
// until ctx ends; then it says it leaves (so that its peers need not wait for its lease to run
// out) and stops listening.
func (f *Fleet) Start(ctx context.Context) error {
	defer f.stop()
	tick := time.NewTicker(f.opts.Interval)
	defer tick.Stop()
	var pings sync.WaitGroup
	defer pings.Wait()
	n := 0
	for {
		f.beat(ctx, false)
		f.expire()
		if n%5 == 0 {
			pings.Go(func() { f.ping(ctx) })
		}
		n++
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// stop says this gateway leaves: a last heartbeat marked draining goes out, and its KV entry is
// deleted.
func (f *Fleet) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = f.opts.Conn.Publish(f.subject("bye", f.opts.ID), nil)
	if err := f.kv.Delete(ctx, f.opts.ID); err != nil {
		f.log.Debug("removing this gateway from the fleet bucket failed", "err", err)
	}
	_ = f.opts.Conn.FlushTimeout(time.Second)
	f.unsubscribe()
	f.mu.Lock()
	f.notifyLocked() // releases whoever waits on Changed
	f.mu.Unlock()
}

func (f *Fleet) unsubscribe() {
	for _, s := range []*nats.Subscription{f.sub, f.byes, f.pings} {
		if s != nil {
			_ = s.Unsubscribe()
		}
	}
}

// bye records a member that said it leaves: its leases end now.
func (f *Fleet) bye(m *nats.Msg) {
	id := m.Subject[len(f.subject("bye", "")):]
	f.mu.Lock()
	mem, ok := f.members[id]
	if ok && !mem.Self {
		delete(f.members, id)
		f.notifyLocked()
	}
	f.mu.Unlock()
	if ok && !mem.Self {
		f.log.Info("gateway left the fleet", "gateway", id, "site", mem.Site)
		if mem.Journal == f.journal {
			select {
			case f.left <- id:
			default:
			}
		}
	}
}

// beat publishes this gateway's heartbeat.
func (f *Fleet) beat(ctx context.Context, draining bool) {
	hb := Heartbeat{ID: f.opts.ID, Site: f.opts.Site, URL: f.opts.URL, Journal: f.journal, Started: f.started,
		Sent: f.opts.Now(), Interval: f.opts.Interval, Agents: f.opts.Load(), Draining: draining || f.opts.Draining()}
	data, err := json.Marshal(hb)
	if err != nil {
		f.log.Error("encoding the heartbeat failed", "err", err)
		return
	}
	if err := f.opts.Conn.Publish(f.subject("hb", f.opts.ID), data); err != nil {
		f.log.Warn("publishing the heartbeat failed", "err", err)
	}
	kctx, cancel := context.WithTimeout(ctx, f.opts.Interval)
	defer cancel()
	if _, err := f.kv.Put(kctx, f.opts.ID, data); err != nil && ctx.Err() == nil {
		f.log.Debug("writing the heartbeat to the fleet bucket failed", "err", err)
	}
}

// expire drops members whose lease ran out, and reports those of this journal on Left.
func (f *Fleet) expire() {
	now := f.opts.Now()
	var gone []*Member
	f.mu.Lock()
	for id, m := range f.members {
		if !f.alive(m, now) {
			delete(f.members, id)
			gone = append(gone, m)
		}
	}
	if len(gone) > 0 {
		f.notifyLocked()
	}
	f.mu.Unlock()
	for _, m := range gone {
		f.log.Warn("gateway left the fleet: no heartbeat", "gateway", m.ID, "site", m.Site, "lastSeen", m.LastSeen)
		if m.Journal == f.journal {
			select {
			case f.left <- m.ID:
			default: // a sweep is pending anyway
			}
		}
	}
}

// ping measures the round trip to every peer over NATS.
func (f *Fleet) ping(ctx context.Context) {
	for _, m := range f.Members() {
		if m.Self || ctx.Err() != nil {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, f.opts.Interval)
		began := time.Now()
		_, err := f.opts.Conn.RequestWithContext(pctx, f.subject("ping", m.ID), nil)
		rtt := time.Since(began)
		cancel()
		if err != nil {
			continue
		}
		f.mu.Lock()
		if cur, ok := f.members[m.ID]; ok {
			cur.RTT = rtt
		}
		f.mu.Unlock()
	}
}

// Peers returns the live members other than this gateway that take tasks from peers and serve
// agent, with their load of it.
func (f *Fleet) Peers(agent string) []Member {
	var out []Member
	for _, m := range f.Members() {
		if m.Self || m.URL == "" || m.Draining {
			continue
		}
		if _, ok := m.Agents[agent]; ok {
			out = append(out, m)
		}
	}
	return out
}

// Agents returns every agent some live member serves, with a copy of its description.
func (f *Fleet) Agents() map[string]Load {
	out := map[string]Load{}
	for _, m := range f.Members() {
		for name, l := range m.Agents {
			if _, ok := out[name]; !ok || l.Ready > out[name].Ready {
				out[name] = l
			}
		}
	}
	return out
}
