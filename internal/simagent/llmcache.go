package simagent

import "container/list"

// contextCache is a replica's context (prefix) cache: for each conversation
// (A2A contextId) it remembers how many tokens of it the replica holds, the
// whole conversation so far. It is bounded in tokens and evicts the least
// recently used conversations first. It is not safe for concurrent use.
type contextCache struct {
	capacity  int // tokens; 0 = caches nothing
	used      int
	order     *list.List // front = most recently used; values are *cacheEntry
	byContext map[string]*list.Element
	evictions int64
}

type cacheEntry struct {
	contextID string
	tokens    int
}

func newContextCache(capacity int) *contextCache {
	return &contextCache{capacity: capacity, order: list.New(), byContext: map[string]*list.Element{}}
}

// get returns the tokens held for a conversation and marks it used.
func (c *contextCache) get(contextID string) (int, bool) {
	el, ok := c.byContext[contextID]
	if !ok {
		return 0, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*cacheEntry).tokens, true
}

// put records that the replica holds tokens of a conversation, the most
// recently used, evicting others to make room. A conversation larger than the
// whole cache is not kept (and its older entry is dropped).
func (c *contextCache) put(contextID string, tokens int) {
	if el, ok := c.byContext[contextID]; ok {
		c.remove(el)
	}
	if tokens <= 0 || tokens > c.capacity {
		return
	}
	for c.used+tokens > c.capacity {
		c.remove(c.order.Back())
		c.evictions++
	}
	c.byContext[contextID] = c.order.PushFront(&cacheEntry{contextID: contextID, tokens: tokens})
	c.used += tokens
}

func (c *contextCache) remove(el *list.Element) {
	e := c.order.Remove(el).(*cacheEntry)
	delete(c.byContext, e.contextID)
	c.used -= e.tokens
}

func (c *contextCache) len() int { return c.order.Len() }
