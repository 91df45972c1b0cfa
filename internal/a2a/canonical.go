package a2a

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
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
func checkCanonical(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := canonicalValue(dec, "$"); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func canonicalValue(dec *json.Decoder, path string) error {
	return canonicalValueIn(dec, path, true)
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

func canonicalValueIn(dec *json.Decoder, path string, protocol bool) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		return canonicalObject(dec, path, protocol)
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			if err := canonicalValueIn(dec, fmt.Sprintf("%s[%d]", path, i), protocol); err != nil {
				return err
			}
		}
		_, err := dec.Token() // ]
		return err
	}
	return nil
}

func canonicalObject(dec *json.Decoder, path string, protocol bool) error {
	seen := map[string]string{} // lower-cased key → key as written
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		fold := strings.ToLower(key)
		if prev, dup := seen[fold]; dup {
			if prev == key {
				return fmt.Errorf("%s: key %q appears twice", path, key)
			}
			return fmt.Errorf("%s: keys %q and %q differ only in case", path, prev, key)
		}
		if want, known := protocolKeys[fold]; protocol && known && want != key {
			return fmt.Errorf("%s: key %q must be spelled %q", path, key, want)
		}
		seen[fold] = key
		free := key == "metadata" || key == "data" // the caller's own keys
		if err := canonicalValueIn(dec, path+"."+key, protocol && !free); err != nil {
			return err
		}
	}
	_, err := dec.Token() // }
	return err
}
