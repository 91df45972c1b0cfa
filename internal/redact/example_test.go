package redact_test

import (
	"fmt"

	configv1 "github.com/agentplane/agentplane/api/config/v1alpha1"
	"github.com/agentplane/agentplane/internal/redact"
)

func Example() {
	r, _ := redact.New(configv1.Redaction{Patterns: configv1.BuiltinPatterns})
	fmt.Println(r.String("MRN: 00482913, call (555) 010-0199"))
	// Output: MRN: [REDACTED:mrn], call [REDACTED:phone]
}
