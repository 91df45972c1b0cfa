package auth_test

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"time"

	configv1 "github.com/agentplane/agentplane/api/config/v1alpha1"
	"github.com/agentplane/agentplane/internal/auth"
)

// A replica of agent triage calls the gateway with the key the supervisor issued it, and may call
// radiology because a policy says so.
func Example() {
	cfg := &configv1.GatewayConfig{APIVersion: configv1.APIVersion, Kind: configv1.KindGatewayConfig,
		Policies: []configv1.Policy{{Name: "triage-calls-radiology", Subjects: []string{"agent:triage"}, Agents: []string{"radiology"}}},
	}
	cfg.SetDefaults()
	st, err := auth.FromConfig(cfg, auth.Options{})
	if err != nil {
		panic(err)
	}
	key, revoke, _ := st.Keys.IssueAgentKey("triage", "clinic-a") // AGENTPLANE_TOKEN of the replica
	defer revoke()

	r := httptest.NewRequest("POST", "/agents/radiology", nil)
	r.Header.Set("Authorization", "Bearer "+key)
	s, err := st.Authenticator.Authenticate(r)
	if err != nil {
		panic(err)
	}
	fmt.Println(s.Name, s.Kind)
	fmt.Println(st.Authorizer.Allow(s, "radiology", "") == nil)
	err = st.Authorizer.Allow(s, "billing", "")
	fmt.Println(errors.Is(err, auth.ErrForbidden), auth.HTTPStatus(err), auth.ClientMessage(err))
	fmt.Println(st.RateLimiter.Allow(s, "radiology", time.Now()) == nil)
	// Output:
	// agent:triage agent
	// true
	// true 403 not allowed
	// true
}
