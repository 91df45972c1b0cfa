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
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		return canonicalObject(dec, path)
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			if err := canonicalValue(dec, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		_, err := dec.Token() // ]
		return err
	}
	return nil
}

func canonicalObject(dec *json.Decoder, path string) error {
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
		seen[fold] = key
		if err := canonicalValue(dec, path+"."+key); err != nil {
			return err
		}
	}
	_, err := dec.Token() // }
	return err
}
