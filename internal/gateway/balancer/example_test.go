package balancer_test

import (
	"errors"
	"fmt"

	"github.com/agentplane/agentplane/internal/gateway/balancer"
	"github.com/agentplane/agentplane/internal/gateway/balancer/policies"
)

func ExamplePolicy() {
	reg := policies.Default(policies.Options{Site: "clinic-a"})
	pol, _ := reg.Get(policies.NameFor("stateless"))
	cands := []balancer.Candidate{
		{Key: "http://127.0.0.1:9001", Site: "clinic-a", Ready: true, Capacity: 2, InFlight: 2},
		{Key: "http://127.0.0.1:9002", Site: "clinic-a", Ready: true, Capacity: 2, InFlight: 1},
		{Key: "http://10.0.0.7:9001", Site: "hub", Ready: true, Capacity: 2},
	}
	i, err := pol.Pick(balancer.Request{AllowedSites: []string{"clinic-a", "hub"}}, cands)
	fmt.Println(cands[i].Key, err)

	cands[1].InFlight = 2 // the local site is full: spill to the hub
	i, _ = pol.Pick(balancer.Request{AllowedSites: []string{"clinic-a", "hub"}}, cands)
	fmt.Println(cands[i].Key)

	_, err = pol.Pick(balancer.Request{AllowedSites: []string{"clinic-a"}}, cands) // never the hub
	fmt.Println(errors.Is(err, balancer.ErrSaturated))
	// Output:
	// http://127.0.0.1:9002 <nil>
	// http://10.0.0.7:9001
	// true
}
