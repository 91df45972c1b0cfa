package controller_test

import (
	"testing"

	"github.com/agentplane/agentplane/internal/controller/testenv"
)

// env is one kube-apiserver and etcd for every test of the package; each test works in its own
// namespace.
var env = &testenv.Env{}

func TestMain(m *testing.M) { testenv.Main(m, env) }
