package v1alpha1

// Default values applied by SetDefaults, and by the CRD's defaulting on Kubernetes.
const (
	DefaultReplicas         int32 = 1
	DefaultMaxConcurrency   int32 = 4
	DefaultProbePath              = "/.well-known/agent-card.json"
	DefaultPeriodSeconds    int32 = 5
	DefaultTimeoutSeconds   int32 = 2
	DefaultFailureThreshold int32 = 3
	// DefaultStartupFailureThreshold with DefaultPeriodSeconds gives a replica 60s to start.
	DefaultStartupFailureThreshold int32 = 120
	DefaultStartupPeriodSeconds    int32 = 1
)

// Defaults the operator applies on Kubernetes; embedded mode does not use these fields.
const (
	DefaultPort                           int32 = 8080
	DefaultGPUResource                          = "nvidia.com/gpu"
	DefaultRunAsUser                      int64 = 65532
	DefaultTargetCPUUtilizationPercentage int32 = 80
)

// SetDefaults fills every optional field of a that has a default. It is idempotent.
func (a *Agent) SetDefaults() {
	s := &a.Spec
	if s.Replicas == nil {
		r := DefaultReplicas
		s.Replicas = &r
	}
	if s.MaxConcurrency == 0 {
		s.MaxConcurrency = DefaultMaxConcurrency
	}
	if s.State == "" {
		s.State = Stateless
	}
	if s.Probes == nil {
		s.Probes = &Probes{}
	}
	s.Probes.Startup = defaultProbe(s.Probes.Startup, DefaultStartupPeriodSeconds, DefaultStartupFailureThreshold)
	s.Probes.Readiness = defaultProbe(s.Probes.Readiness, DefaultPeriodSeconds, DefaultFailureThreshold)
	s.Probes.Liveness = defaultProbe(s.Probes.Liveness, DefaultPeriodSeconds, DefaultFailureThreshold)
}

func defaultProbe(p *Probe, period, failures int32) *Probe {
	if p == nil {
		p = &Probe{}
	}
	if p.Path == "" {
		p.Path = DefaultProbePath
	}
	if p.PeriodSeconds == 0 {
		p.PeriodSeconds = period
	}
	if p.TimeoutSeconds == 0 {
		p.TimeoutSeconds = DefaultTimeoutSeconds
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = failures
	}
	return p
}

// DesiredReplicas is spec.replicas with its default applied.
func (a *Agent) DesiredReplicas() int {
	if a.Spec.Replicas == nil {
		return int(DefaultReplicas)
	}
	return int(*a.Spec.Replicas)
}
