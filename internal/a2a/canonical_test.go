package a2a

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// checkCanonicalTokens is checkCanonical as it was first written, over encoding/json's tokens:
// the reading the byte scan must agree with.
func checkCanonicalTokens(body []byte) error {
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

// canonicalCases are bodies checkCanonical accepts and refuses, as seeds of FuzzCheckCanonical.
var canonicalCases = []string{
	`{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"m","role":"ROLE_USER","parts":[{"text":"hi"}]}}}`,
	`{"method":"ListTasks","Method":"SendMessage"}`,
	`{"id":1,"id":2}`,
	`{"params":{"message":{"taskid":"x"}}}`,
	`{"params":{"metadata":{"Method":1,"method":2}}}`,
	`{"params":{"metadata":{"a":1,"a":2}}}`,
	`{"params":{"message":{"parts":[{"data":{"TaskId":1}},{"kind":"data","Kind":"x"}]}}}`,
	`{"p":[[{"a":1}],[{"b":1,"B":2}]]}`,
	`{"m\u0065thod":"x","method":"y"}`,
	`{"k\u00e9y":1,"K\u00c9Y":2}`,
	"{\"\xff\":1,\"\xfe\":2}",
	`{"a":{"b":{"c":[1,2,{"d":null,"D":true}]}}}`,
	`{"1":1,"2":2,"3":3,"4":4,"5":5,"6":6,"7":7,"8":8,"9":9,"10":10,"1":0}`,
	`{"1":1,"2":2,"3":3,"4":4,"5":5,"6":6,"7":7,"8":8,"9":9,"10":10,"A":1,"a":0}`,
	` [ 1 , "x" , -2.5e10 , { } , [ ] ] `,
	`"just a string"`,
	`{"s":"with \" quote and \\ slash","S":1}`,
}

func TestCheckCanonicalAgreesWithTokens(t *testing.T) {
	for _, in := range canonicalCases {
		checkCanonicalAgrees(t, in)
	}
}

// FuzzCheckCanonical checks that the byte scan reads every valid JSON text as the token reading
// does, and never panics on anything else.
func FuzzCheckCanonical(f *testing.F) {
	for _, in := range canonicalCases {
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if !json.Valid([]byte(in)) {
			_ = checkCanonical([]byte(in))
			return
		}
		checkCanonicalAgrees(t, in)
	})
}

func checkCanonicalAgrees(t *testing.T, in string) {
	t.Helper()
	got, want := checkCanonical([]byte(in)), checkCanonicalTokens([]byte(in))
	if (got == nil) != (want == nil) || got != nil && got.Error() != want.Error() {
		t.Errorf("checkCanonical(%s) = %v; the token reading says %v", in, got, want)
	}
}
