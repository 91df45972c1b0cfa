package a2a

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// checkCanonical refuses a JSON text that two decoders could read differently: an object with
// the same key twice, or with two keys that differ only in case. Go's decoder (which the A2A
// SDKs' Go servers use) matches struct fields case-insensitively and keeps the last duplicate,
// while the gateway reads keys exactly; a body such as {"method":"ListTasks","Method":"SendMessage"}
// would be authorized and audited as one method and run as another. Refusing such bodies at
// every level gives the gateway and every agent one reading of each request.
//
// A key spelled in another case than the protocol spells it (`"taskid"`, `"Method"`) is refused
// too: the gateway may read it exactly or not at all where an agent reads it, and a key it
// edits (the task id of a continuation, say) would then stand twice with two values. Inside
// "metadata" and a data part's "data", which are the caller's own, keys are free.
//
// body must be valid JSON (both callers have checked): the check scans its bytes once, without
// decoding values, and refuses what it cannot read.
func checkCanonical(body []byte) error {
	c := canonicalScan{b: body}
	if err := c.value(true); err != nil {
		return err
	}
	if c.space(); c.i != len(c.b) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// protocolKeys are the A2A and JSON-RPC keys the gateway or an agent interprets, as the
// protocol spells them, by their lower-case form.
var protocolKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"jsonrpc", "id", "method", "params", "message", "messageId", "contextId", "taskId",
		"role", "parts", "kind", "text", "file", "data", "url", "raw", "bytes", "uri", "mediaType", "mimeType", "name",
		"filename", "metadata", "configuration", "blocking", "returnImmediately", "historyLength",
		"acceptedOutputModes", "pushNotificationConfig", "referenceTaskIds", "extensions", "tenant",
		"pageSize", "pageToken", "status", "state", "includeArtifacts", "statusTimestampAfter", "lastUpdatedAfter",
		"taskPushNotificationConfig", "pushNotificationConfigId", "authentication", "scheme", "schemes",
		"credentials", "token"} {
		m[strings.ToLower(k)] = k
	}
	return m
}()

// errNotJSON is what checkCanonical says of bytes that are not valid JSON.
var errNotJSON = errors.New("invalid JSON")

// canonicalScan walks a JSON text for checkCanonical. path holds where it is, rendered into an
// error only when there is one.
type canonicalScan struct {
	b    []byte
	i    int
	path []pathStep
}

// pathStep is an object key, or when index >= 0 an array index.
type pathStep struct {
	key   string
	index int
}

// at renders the path as "$.params.message.parts[0]".
func (c *canonicalScan) at() string {
	var sb strings.Builder
	sb.WriteString("$")
	for _, p := range c.path {
		if p.index >= 0 {
			fmt.Fprintf(&sb, "[%d]", p.index)
		} else {
			sb.WriteString(".")
			sb.WriteString(p.key)
		}
	}
	return sb.String()
}

func (c *canonicalScan) space() {
	for c.i < len(c.b) && (c.b[c.i] == ' ' || c.b[c.i] == '\t' || c.b[c.i] == '\n' || c.b[c.i] == '\r') {
		c.i++
	}
}

// next consumes the next byte after white space.
func (c *canonicalScan) next() (byte, error) {
	c.space()
	if c.i >= len(c.b) {
		return 0, errNotJSON
	}
	c.i++
	return c.b[c.i-1], nil
}

func (c *canonicalScan) value(protocol bool) error {
	c.space()
	if c.i >= len(c.b) {
		return errNotJSON
	}
	switch c.b[c.i] {
	case '{':
		c.i++
		return c.object(protocol)
	case '[':
		c.i++
		if c.space(); c.i < len(c.b) && c.b[c.i] == ']' {
			c.i++
			return nil
		}
		for n := 0; ; n++ {
			c.path = append(c.path, pathStep{index: n})
			err := c.value(protocol)
			c.path = c.path[:len(c.path)-1]
			if err != nil {
				return err
			}
			switch b, err := c.next(); {
			case err != nil:
				return err
			case b == ']':
				return nil
			case b != ',':
				return errNotJSON
			}
		}
	case '"':
		_, err := c.str()
		return err
	}
	start := c.i // a number, true, false or null
	for c.i < len(c.b) && !strings.ContainsRune(",]} \t\r\n", rune(c.b[c.i])) {
		c.i++
	}
	if c.i == start {
		return errNotJSON
	}
	return nil
}

// str consumes a string and returns its raw bytes, quotes included.
func (c *canonicalScan) str() ([]byte, error) {
	start := c.i
	if c.i >= len(c.b) || c.b[c.i] != '"' {
		return nil, errNotJSON
	}
	for c.i++; c.i < len(c.b); c.i++ {
		switch c.b[c.i] {
		case '\\':
			c.i++
		case '"':
			c.i++
			return c.b[start:c.i], nil
		}
	}
	return nil, errNotJSON
}

// key consumes an object key and returns it decoded, as encoding/json reads it.
func (c *canonicalScan) key() (string, error) {
	c.space()
	raw, err := c.str()
	if err != nil {
		return "", err
	}
	for _, b := range raw {
		if b == '\\' || b >= utf8.RuneSelf { // escapes, or bytes json replaces when invalid
			var k string
			if json.Unmarshal(raw, &k) != nil {
				return "", errNotJSON
			}
			return k, nil
		}
	}
	return string(raw[1 : len(raw)-1]), nil
}

// object checks the keys of an object whose "{" was consumed, and its values.
func (c *canonicalScan) object(protocol bool) error {
	if c.space(); c.i < len(c.b) && c.b[c.i] == '}' {
		c.i++
		return nil
	}
	// seen maps each lower-cased key to the key as written: a few in a slice, more in a map.
	var few [8][2]string
	seen := few[:0]
	var many map[string]string
	for {
		key, err := c.key()
		if err != nil {
			return err
		}
		fold := strings.ToLower(key)
		prev, dup := "", false
		if many != nil {
			prev, dup = many[fold]
		} else {
			for _, s := range seen {
				if s[0] == fold {
					prev, dup = s[1], true
					break
				}
			}
		}
		if dup {
			if prev == key {
				return fmt.Errorf("%s: key %q appears twice", c.at(), key)
			}
			return fmt.Errorf("%s: keys %q and %q differ only in case", c.at(), prev, key)
		}
		if want, known := protocolKeys[fold]; protocol && known && want != key {
			return fmt.Errorf("%s: key %q must be spelled %q", c.at(), key, want)
		}
		if many == nil && len(seen) == len(few) {
			many = make(map[string]string, 2*len(few))
			for _, s := range seen {
				many[s[0]] = s[1]
			}
		}
		if many != nil {
			many[fold] = key
		} else {
			seen = append(seen, [2]string{fold, key})
		}
		if b, err := c.next(); err != nil || b != ':' {
			return errNotJSON
		}
		free := key == "metadata" || key == "data" // the caller's own keys
		c.path = append(c.path, pathStep{key: key, index: -1})
		err = c.value(protocol && !free)
		c.path = c.path[:len(c.path)-1]
		if err != nil {
			return err
		}
		switch b, err := c.next(); {
		case err != nil:
			return err
		case b == '}':
			return nil
		case b != ',':
			return errNotJSON
		}
	}
}
