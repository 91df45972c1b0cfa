// Package supervisor runs the replicas of agents as local processes in embedded mode
// (`agentplane up`), and tells the gateway where they are.
//
// New and Apply refuse an agent whose program or working directory is not on this machine
// (manifest.ResolvePaths: relative to the agent's manifest file). For every replica it picks a
// free port, starts the agent's program in its working directory and its own process group
// with PORT, AGENTPLANE_AGENT and AGENTPLANE_REPLICA set, appends its output to a log file
// (keeping the last lines of its stderr), polls the startup, readiness and liveness probes,
// and restarts it with exponential backoff when it exits. A replica that is not ready says why
// in its Endpoint (Reason, Message, StderrTail), such as its startup probe's last error. On shutdown it first marks every replica Terminating, so the gateway stops routing, then
// sends SIGTERM to each process group and SIGKILL after a grace period; KillAll kills every
// group at once, for a forced exit. On Linux every replica is started with a parent-death signal
// (SIGKILL) from one OS thread that lives as long as Start, so replicas die with the supervisor's
// process even when it is killed (not the processes a replica started itself, which the signal
// does not reach). Pid files under DataDir/run let the next run kill replicas left behind by a
// supervisor that was killed itself where there is no such signal.
//
// Apply changes the agents while it runs: it starts new agents, drains and stops removed ones,
// scales, and replaces the replicas of an agent whose spec changed one at a time with a surge
// of one, so the number of ready replicas never drops. Replica names (<agent>-<i>) are stable;
// during a rolling update the old and the new process of a replica are briefly listed together
// under the same name, with different URLs and pids.
//
// The Supervisor is a discovery.Source: Snapshot and Changed are all the gateway needs.
//
// It is not a general process manager: it does not limit resources, rotate logs or run anything
// on Kubernetes, where the controller and the kubelet do this work.
package supervisor
