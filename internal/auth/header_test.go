package auth

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

var authorizationCases = []struct {
	in           string
	scheme, cred string
	ok           bool
}{
	{"Bearer abc.def.ghi", "Bearer", "abc.def.ghi", true},
	{"bearer apk_xyz", "bearer", "apk_xyz", true},
	{"  Bearer \t tok==  ", "Bearer", "tok==", true},
	{"Bearer a+b/c~d-e_f.g=", "Bearer", "a+b/c~d-e_f.g=", true},
	{"Bearer", "", "", false},
	{"Bearer ", "", "", false},
	{" Bearer", "", "", false},
	{"", "", "", false},
	{"Bearer a b", "", "", false},
	{"Bearer a,b", "", "", false},
	{"Bearer =abc", "", "", false},
	{"Bearer ab=c", "", "", false},
	{"Bea(rer abc", "", "", false},
	{"Bearer abc\x00", "", "", false},
	{"Bearer abc\r\nX-Evil: 1", "", "", false},
	{"Basic dXNlcjpwYXNz", "Basic", "dXNlcjpwYXNz", true},
	{"Digest realm=\"x\", nonce=\"y\"", "", "", false},
	{"Bearer " + strings.Repeat("a", MaxCredentialBytes), "", "", false},
	{"Bearer ñ", "", "", false},
}

func TestParseAuthorization(t *testing.T) {
	for _, tc := range authorizationCases {
		s, c, err := ParseAuthorization(tc.in)
		if (err == nil) != tc.ok || s != tc.scheme || c != tc.cred {
			t.Errorf("ParseAuthorization(%q) = %q, %q, %v; want %q, %q, ok=%v", tc.in, s, c, err, tc.scheme, tc.cred, tc.ok)
		}
	}
}

// FuzzParseAuthorization checks that no header value panics the parser, that what parses is a
// token scheme and a token68 credential, and that parse → format → parse is the identity.
func FuzzParseAuthorization(f *testing.F) {
	for _, tc := range authorizationCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, h string) {
		s, c, err := ParseAuthorization(h)
		if err != nil {
			if s != "" || c != "" {
				t.Fatalf("error with non-empty results %q %q", s, c)
			}
			return
		}
		if !isToken(s) || !isToken68(c) {
			t.Fatalf("ParseAuthorization(%q) = %q, %q: not a token and token68", h, s, c)
		}
		s2, c2, err := ParseAuthorization(FormatAuthorization(s, c))
		if err != nil || s2 != s || c2 != c {
			t.Fatalf("round trip of %q: %q %q %v, want %q %q", h, s2, c2, err, s, c)
		}
		// What the request path does with the same value must agree and never panic.
		r, _ := http.NewRequest(http.MethodPost, "/", nil)
		r.Header.Set("Authorization", h)
		creds, err := readCredentials(r)
		if strings.EqualFold(s, "Bearer") && (err != nil || creds.bearer != c) {
			t.Fatalf("readCredentials(%q) = %+v, %v", h, creds, err)
		}
		if err != nil && !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("readCredentials error %v does not match ErrInvalidCredentials", err)
		}
	})
}

func TestReadCredentialsAmbiguous(t *testing.T) {
	for name, h := range map[string]http.Header{
		"two authorization headers": {"Authorization": {"Bearer a", "Bearer b"}},
		"two api keys":              {"X-Api-Key": {"a", "b"}},
		"both kinds":                {"Authorization": {"Bearer a"}, "X-Api-Key": {"b"}},
		"basic":                     {"Authorization": {"Basic dXNlcjpwYXNz"}},
		"malformed":                 {"Authorization": {"Bearer"}},
		"api key with space":        {"X-Api-Key": {"a b"}},
	} {
		r, _ := http.NewRequest(http.MethodPost, "/", nil)
		r.Header = h
		if _, err := readCredentials(r); !errors.Is(err, ErrInvalidCredentials) {
			t.Errorf("%s: err = %v, want ErrInvalidCredentials", name, err)
		}
	}
}
