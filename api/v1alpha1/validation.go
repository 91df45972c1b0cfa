package v1alpha1

import (
	"fmt"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// MaxReplicas bounds spec.replicas so that a typo cannot fork thousands of processes.
const MaxReplicas = 1000

var memorySize = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$`)

// Validate checks a defaulted Agent for embedded mode and Kubernetes alike. Each error names the
// field path and says why the value is wrong.
func (a *Agent) Validate() field.ErrorList {
	var errs field.ErrorList
	if a.APIVersion != GroupVersion.String() {
		errs = append(errs, field.Invalid(field.NewPath("apiVersion"), a.APIVersion, "must be "+GroupVersion.String()))
	}
	if a.Kind != KindAgent {
		errs = append(errs, field.Invalid(field.NewPath("kind"), a.Kind, "must be "+KindAgent))
	}
	name := field.NewPath("metadata", "name")
	if a.Name == "" {
		errs = append(errs, field.Required(name, "every agent needs a name"))
	} else {
		for _, msg := range validation.IsDNS1035Label(a.Name) {
			errs = append(errs, field.Invalid(name, a.Name, msg))
		}
	}
	return append(errs, a.Spec.validate(field.NewPath("spec"))...)
}

func (s *AgentSpec) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if s.Replicas != nil && (*s.Replicas < 0 || *s.Replicas > MaxReplicas) {
		errs = append(errs, field.Invalid(p.Child("replicas"), *s.Replicas, fmt.Sprintf("must be between 0 and %d", MaxReplicas)))
	}
	if s.TaskTimeout != nil && s.TaskTimeout.Duration <= 0 {
		errs = append(errs, field.Invalid(p.Child("taskTimeout"), s.TaskTimeout.Duration.String(), "must be positive, such as 30s or 10m"))
	}
	if s.MaxConcurrency < 1 {
		errs = append(errs, field.Invalid(p.Child("maxConcurrency"), s.MaxConcurrency, "must be at least 1"))
	}
	if len(s.Command) == 0 && s.Image == "" {
		errs = append(errs, field.Required(p.Child("command"), "set command (embedded mode) or image (Kubernetes), or both"))
	}
	for i, c := range s.Command {
		if strings.TrimSpace(c) == "" {
			errs = append(errs, field.Invalid(p.Child("command").Index(i), c, "must not be empty"))
		}
	}
	seen := map[string]bool{}
	for i, e := range s.Env {
		ep := p.Child("env").Index(i).Child("name")
		switch {
		case e.Name == "":
			errs = append(errs, field.Required(ep, ""))
		case seen[e.Name]:
			errs = append(errs, field.Duplicate(ep, e.Name))
		case reservedEnv[e.Name]:
			errs = append(errs, field.Forbidden(ep, e.Name+" is set by agentplane for each replica"))
		default:
			for _, msg := range validation.IsEnvVarName(e.Name) {
				errs = append(errs, field.Invalid(ep, e.Name, msg))
			}
		}
		seen[e.Name] = true
	}
	switch s.State {
	case Stateless:
		if s.Memory != nil {
			errs = append(errs, field.Forbidden(p.Child("memory"), "only stateful agents have memory"))
		}
	case Stateful:
		if s.Memory == nil {
			errs = append(errs, field.Required(p.Child("memory"), "stateful agents need a memory volume"))
		}
	default:
		errs = append(errs, field.NotSupported(p.Child("state"), s.State, []string{string(Stateless), string(Stateful)}))
	}
	if s.Memory != nil && !memorySize.MatchString(s.Memory.Size) {
		errs = append(errs, field.Invalid(p.Child("memory", "size"), s.Memory.Size, `must be a quantity such as "512Mi" or "1Gi"`))
	}
	errs = append(errs, s.validateKubernetes(p)...)
	if s.Probes != nil {
		errs = append(errs, s.Probes.Startup.validate(p.Child("probes", "startup"))...)
		errs = append(errs, s.Probes.Readiness.validate(p.Child("probes", "readiness"))...)
		errs = append(errs, s.Probes.Liveness.validate(p.Child("probes", "liveness"))...)
	}
	if pl := s.Placement; pl != nil {
		pp := p.Child("placement")
		if pl.Site != "" {
			for _, msg := range validation.IsDNS1123Label(pl.Site) {
				errs = append(errs, field.Invalid(pp.Child("site"), pl.Site, msg))
			}
		}
		for i, site := range pl.AllowedSites {
			for _, msg := range validation.IsDNS1123Label(site) {
				errs = append(errs, field.Invalid(pp.Child("allowedSites").Index(i), site, msg))
			}
		}
		if pl.Site != "" && len(pl.AllowedSites) > 0 && !contains(pl.AllowedSites, pl.Site) {
			errs = append(errs, field.Invalid(pp.Child("site"), pl.Site, "is not in placement.allowedSites, so no task could be served"))
		}
	}
	return errs
}

func (pr *Probe) validate(p *field.Path) field.ErrorList {
	if pr == nil {
		return nil
	}
	var errs field.ErrorList
	if pr.Path != "" && !strings.HasPrefix(pr.Path, "/") {
		errs = append(errs, field.Invalid(p.Child("path"), pr.Path, `must start with "/"`))
	}
	for _, f := range []struct {
		name string
		v    int32
	}{{"periodSeconds", pr.PeriodSeconds}, {"timeoutSeconds", pr.TimeoutSeconds}, {"failureThreshold", pr.FailureThreshold}} {
		if f.v < 0 {
			errs = append(errs, field.Invalid(p.Child(f.name), f.v, "must not be negative"))
		}
	}
	return errs
}

// reservedEnv are the variables agentplane sets for every replica.
var reservedEnv = map[string]bool{"PORT": true, "AGENTPLANE_AGENT": true, "AGENTPLANE_REPLICA": true}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// validateKubernetes checks the fields that only the operator uses, with the same rules as the
// CRD's CEL validation so that a manifest valid in one runtime is valid in the other.
func (s *AgentSpec) validateKubernetes(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if s.Port != 0 && (s.Port < 1 || s.Port > 65535) {
		errs = append(errs, field.Invalid(p.Child("port"), s.Port, "must be between 1 and 65535"))
	}
	switch s.ImagePullPolicy {
	case "", "Always", "IfNotPresent", "Never":
	default:
		errs = append(errs, field.NotSupported(p.Child("imagePullPolicy"), s.ImagePullPolicy, []string{"Always", "IfNotPresent", "Never"}))
	}
	if r := s.Resources; r != nil && r.GPUs < 0 {
		errs = append(errs, field.Invalid(p.Child("resources", "gpus"), r.GPUs, "must not be negative"))
	}
	minReplicas := int32(-1) // the bound minAvailable must stay under; -1: none
	if s.Replicas != nil && *s.Replicas > 0 {
		minReplicas = *s.Replicas
	}
	if as := s.Autoscaling; as != nil {
		ap := p.Child("autoscaling")
		lo := int32(1)
		if as.MinReplicas != nil {
			lo = *as.MinReplicas
			switch {
			case lo < 0:
				errs = append(errs, field.Invalid(ap.Child("minReplicas"), lo, "must not be negative"))
			case lo == 0 && !as.TaskBased():
				errs = append(errs, field.Invalid(ap.Child("minReplicas"), lo, "0 needs task-based scaling: a CPU autoscaler (targetCPUUtilizationPercentage) cannot scale from zero"))
			}
		}
		if t := as.TargetLoad; t != nil && (*t < 0.05 || *t > 1) {
			errs = append(errs, field.Invalid(ap.Child("targetLoad"), *t, "must be a fraction of the slots between 0.05 and 1, such as 0.7"))
		}
		if d := as.ScaleDownDelay; d != nil && d.Duration <= 0 {
			errs = append(errs, field.Invalid(ap.Child("scaleDownDelay"), d.Duration.String(), "must be positive, such as 30s or 5m"))
		}
		if d := as.ScaleToZeroAfter; d != nil && d.Duration <= 0 {
			errs = append(errs, field.Invalid(ap.Child("scaleToZeroAfter"), d.Duration.String(), "must be positive, such as 30s or 5m"))
		}
		if !as.TaskBased() && (as.TargetLoad != nil || as.ScaleDownDelay != nil || as.ScaleToZeroAfter != nil) {
			errs = append(errs, field.Invalid(ap.Child("targetCPUUtilizationPercentage"), *as.TargetCPUUtilizationPercentage,
				"scales on CPU with a HorizontalPodAutoscaler; targetLoad, scaleDownDelay and scaleToZeroAfter are for task-based scaling: set one or the other"))
		}
		if as.MaxReplicas < 1 || as.MaxReplicas > MaxReplicas {
			errs = append(errs, field.Invalid(ap.Child("maxReplicas"), as.MaxReplicas, fmt.Sprintf("must be between 1 and %d", MaxReplicas)))
		} else if lo > as.MaxReplicas {
			errs = append(errs, field.Invalid(ap.Child("minReplicas"), lo, "must not exceed maxReplicas"))
		}
		if t := as.TargetCPUUtilizationPercentage; t != nil && (*t < 1 || *t > 100) {
			errs = append(errs, field.Invalid(ap.Child("targetCPUUtilizationPercentage"), *t, "must be between 1 and 100"))
		}
		minReplicas = lo
	}
	if m := s.MinAvailable; m != nil {
		mp := p.Child("minAvailable")
		switch {
		case *m < 0:
			errs = append(errs, field.Invalid(mp, *m, "must not be negative"))
		case minReplicas >= 0 && *m >= minReplicas:
			errs = append(errs, field.Invalid(mp, *m, fmt.Sprintf("must be less than the replicas (%d), or no replica could ever be evicted", minReplicas)))
		}
	}
	if sec := s.Security; sec != nil && sec.RunAsUser != nil && *sec.RunAsUser < 1 {
		errs = append(errs, field.Invalid(p.Child("security", "runAsUser"), *sec.RunAsUser, "must be a non-root user id (1 or more)"))
	}
	if n := s.Network; n != nil && n.GatewayNamespace != "" {
		for _, msg := range validation.IsDNS1123Label(n.GatewayNamespace) {
			errs = append(errs, field.Invalid(p.Child("network", "gatewayNamespace"), n.GatewayNamespace, msg))
		}
	}
	return errs
}
