package testutil

import (
	"encoding/base64"
	"strings"
	"testing"
)

// Whatever bytes come before s, its base64 encoding contains one of the forms.
func TestReadableFormsFindBase64AtAnyOffset(t *testing.T) {
	const s = "MRN 1234-56 Jane Roe"
	for prefix := range 7 {
		enc := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("x", prefix) + s + "tail"))
		found := false
		for _, f := range ReadableForms(s) {
			found = found || strings.Contains(enc, f)
		}
		if !found {
			t.Errorf("prefix %d: no form of %q in %s", prefix, s, enc)
		}
	}
	enc := base64.StdEncoding.EncodeToString([]byte("something else entirely, no patient here"))
	for _, f := range ReadableForms(s)[1:] {
		if strings.Contains(enc, f) {
			t.Errorf("form %q found in unrelated data", f)
		}
	}
}
