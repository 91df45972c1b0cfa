package gateway

import (
	"container/list"
	"sync"
)

// route says which replica holds a task, so that GetTask, CancelTask and SubscribeToTask reach
// it. It lives in memory and is bounded; the durable task journal supersedes it.
type route struct {
	Replica string // endpoint name, for messages
	URL     string // endpoint URL at the time; a restarted replica has a new one
}

type routeTable struct {
	mu    sync.Mutex
	max   int
	m     map[string]*list.Element
	order *list.List // oldest first; values are routeKey
}

type routeEntry struct {
	key string
	r   route
}

func newRouteTable(max int) *routeTable {
	return &routeTable{max: max, m: map[string]*list.Element{}, order: list.New()}
}

func routeKey(agent, task string) string { return agent + "\x00" + task }

func (t *routeTable) put(agent, task string, r route) {
	k := routeKey(agent, task)
	t.mu.Lock()
	defer t.mu.Unlock()
	if el, ok := t.m[k]; ok {
		el.Value.(*routeEntry).r = r
		return
	}
	t.m[k] = t.order.PushBack(&routeEntry{key: k, r: r})
	for t.order.Len() > t.max {
		oldest := t.order.Front()
		t.order.Remove(oldest)
		delete(t.m, oldest.Value.(*routeEntry).key)
	}
}

func (t *routeTable) get(agent, task string) (route, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	el, ok := t.m[routeKey(agent, task)]
	if !ok {
		return route{}, false
	}
	return el.Value.(*routeEntry).r, true
}
