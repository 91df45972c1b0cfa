package redact

import (
	"encoding/json"
	"strings"
	"testing"

	configv1 "github.com/agentplane/agentplane/api/config/v1alpha1"
)

func newRedactor(t testing.TB, c configv1.Redaction, paths ...string) *Redactor {
	t.Helper()
	if len(c.Patterns) == 0 && !c.Disabled {
		c.Patterns = configv1.BuiltinPatterns
	}
	r, err := New(c, paths...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// All identifiers below are synthetic: 555-01xx phone numbers, SSNs in the 9xx range that are
// never issued, example.org addresses.
func TestString(t *testing.T) {
	r := newRedactor(t, configv1.Redaction{Custom: []configv1.CustomPattern{{Name: "insurance-id", Regex: `\bINS-[0-9]{8}\b`}}})
	for _, tc := range []struct{ in, want string }{
		{"SSN 987-65-4321 on file", "SSN [REDACTED:ssn] on file"},
		{"ssn: 987 65 4321", "ssn: [REDACTED:ssn]"},
		{"Social Security Number: 987654321.", "Social Security Number: [REDACTED:ssn]."},
		{"MRN: 00482913, admitted", "MRN: [REDACTED:mrn], admitted"},
		{"mrn#A1234567", "mrn#[REDACTED:mrn]"},
		{"Medical record number is 77120934", "Medical record number is [REDACTED:mrn]"},
		{"call (555) 010-0199 or 555.010.0142", "call [REDACTED:phone] or [REDACTED:phone]"},
		{"cell +1 555-010-0123", "cell [REDACTED:phone]"},
		{"pager 5550100177", "pager [REDACTED:phone]"},
		{"email jane.doe+clinic@example.org now", "email [REDACTED:email] now"},
		{"j.5550100123@mail.example.org", "[REDACTED:email]"},
		{"policy INS-12345678 active", "policy [REDACTED:insurance-id] active"},
		{"BP 120/80, HR 72, temp 37.2, dose 500 mg", "BP 120/80, HR 72, temp 37.2, dose 500 mg"},
		{"2026-05-01 12:30", "2026-05-01 12:30"},
		{"no identifiers here", "no identifiers here"},
		{"", ""},
	} {
		if got := r.String(tc.in); got != tc.want {
			t.Errorf("String(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSelectedPatternsOnly(t *testing.T) {
	r := newRedactor(t, configv1.Redaction{Patterns: []string{configv1.PatternEmail}})
	in := "987-65-4321 jane@example.org"
	if got := r.String(in); got != "987-65-4321 [REDACTED:email]" {
		t.Fatalf("String = %q", got)
	}
	var nilR *Redactor
	if nilR.String(in) != in {
		t.Fatal("nil Redactor changed its input")
	}
	off := newRedactor(t, configv1.Redaction{Disabled: true})
	if off.String(in) != in {
		t.Fatal("disabled Redactor changed its input")
	}
}

const message = `{"jsonrpc":"2.0","id":7,"method":"SendMessage","params":{"message":{"messageId":"m-1","role":"ROLE_USER",
"parts":[{"text":"Pt MRN: 00482913, SSN 987-65-4321, callback (555) 010-0199, reports chest pain"},{"data":{"dose":500}}],
"metadata":{"contact":"jane.doe@example.org","ward":"4B"}}}}`

func TestJSONPaths(t *testing.T) {
	r := newRedactor(t, configv1.Redaction{}, "params.message.parts.*.text", "params.message.metadata")
	out, err := r.JSON([]byte(message))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		ID     json.Number
		Params struct {
			Message struct {
				MessageID string
				Parts     []map[string]any
				Metadata  map[string]string
			}
		}
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatal(err)
	}
	m := v.Params.Message
	if got := m.Parts[0]["text"]; got != "Pt MRN: [REDACTED:mrn], SSN [REDACTED:ssn], callback [REDACTED:phone], reports chest pain" {
		t.Errorf("text = %q", got)
	}
	if m.Metadata["contact"] != "[REDACTED:email]" || m.Metadata["ward"] != "4B" {
		t.Errorf("metadata = %v", m.Metadata)
	}
	if v.ID != "7" || m.MessageID != "m-1" || !strings.Contains(string(out), `"dose":500`) {
		t.Errorf("untouched values changed: %s", out)
	}
	// Paths not configured are left alone.
	only := newRedactor(t, configv1.Redaction{}, "params.message.metadata.ward")
	out, _ = only.JSON([]byte(message))
	if !strings.Contains(string(out), "987-65-4321") {
		t.Errorf("redacted outside the configured paths: %s", out)
	}
	// The default, "**", covers every string.
	all := newRedactor(t, configv1.Redaction{})
	out, _ = all.JSON([]byte(message))
	for _, phi := range []string{"00482913", "987-65-4321", "010-0199", "jane.doe"} {
		if strings.Contains(string(out), phi) {
			t.Errorf("%q survived ** redaction: %s", phi, out)
		}
	}
	if _, err := all.JSON([]byte(`{"a":`)); err == nil {
		t.Error("invalid JSON accepted")
	}
	if _, err := New(configv1.Redaction{Patterns: configv1.BuiltinPatterns}, "a..b"); err == nil {
		t.Error("path with an empty key accepted")
	}
}

func TestMatchPrefix(t *testing.T) {
	for _, tc := range []struct {
		pattern, path string
		want          bool
	}{
		{"**", "a.b.c", true},
		{"a.*.c", "a.0.c", true},
		{"a.*.c", "a.0.d", false},
		{"a", "a.b.c", true},
		{"a.b", "a", false},
		{"**.text", "params.message.parts.3.text", true},
		{"**.text", "params.message.parts.3.kind", false},
		{"a.**.z", "a.z", true},
		{"a.**.z", "a.b.c.z.q", true},
	} {
		if got := matchPrefix(strings.Split(tc.pattern, "."), strings.Split(tc.path, ".")); got != tc.want {
			t.Errorf("matchPrefix(%q, %q) = %v, want %v", tc.pattern, tc.path, got, tc.want)
		}
	}
}

// TestLinearTime feeds inputs that make backtracking engines explode; RE2 stays linear.
func TestLinearTime(t *testing.T) {
	r := newRedactor(t, configv1.Redaction{Custom: []configv1.CustomPattern{{Name: "evil", Regex: `(a+)+b`}}})
	in := strings.Repeat("a", 1<<16) + strings.Repeat("5", 1<<12) + strings.Repeat("x@", 1<<12)
	_ = r.String(in) // finishes in well under a second; a backtracking engine would not
}

func FuzzString(f *testing.F) {
	f.Add("SSN 987-65-4321 MRN: 00482913 (555) 010-0199 jane@example.org")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		r := newRedactor(t, configv1.Redaction{})
		out := r.String(s)
		if again := r.String(out); again != out {
			t.Fatalf("redaction is not idempotent: %q → %q → %q", s, out, again)
		}
	})
}

var note = strings.Repeat("Patient seen in clinic today for follow-up of hypertension; BP 128/82, HR 70. ", 10) +
	"Contact: MRN: 00482913, phone (555) 010-0199, email jane.doe@example.org, SSN 987-65-4321."

func BenchmarkStringWithPHI(b *testing.B) {
	r := newRedactor(b, configv1.Redaction{})
	b.SetBytes(int64(len(note)))
	for b.Loop() {
		_ = r.String(note)
	}
}

func BenchmarkStringClean(b *testing.B) {
	r := newRedactor(b, configv1.Redaction{})
	clean := strings.Repeat("Patient reports mild headache, no fever, resting well overnight. ", 16)
	b.SetBytes(int64(len(clean)))
	for b.Loop() {
		_ = r.String(clean)
	}
}

func BenchmarkJSON(b *testing.B) {
	r := newRedactor(b, configv1.Redaction{}, "params.message.parts.*.text", "params.message.metadata")
	b.SetBytes(int64(len(message)))
	for b.Loop() {
		if _, err := r.JSON([]byte(message)); err != nil {
			b.Fatal(err)
		}
	}
}
