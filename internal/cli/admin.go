package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/agentplane/agentplane/api/v1alpha1"
	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/manifest"
	"github.com/agentplane/agentplane/internal/supervisor"
)

// Limits of the admin endpoints.
const (
	// adminMaxApplyBytes bounds the manifests of one POST /api/v1/apply.
	adminMaxApplyBytes = manifest.MaxFileSize
	// adminMaxTail bounds ?tail=N of the logs endpoint.
	adminMaxTail = 100_000
	// logPollInterval is how often a followed log file is checked for new lines.
	logPollInterval = 250 * time.Millisecond
)

// adminHandler serves the admin endpoints of embedded mode, next to the gateway's own:
//
//	POST /api/v1/apply                  apply YAML manifests (Content-Type application/yaml)
//	GET  /api/v1/logs/{replica}         a replica's log file; ?tail=N, ?follow=1
//	GET  /api/v1/agents/{name}          an agent's spec as applied, its conditions and replicas
//
// It answers callers on this machine only (the gateway has no authentication yet), and refuses
// requests a web page could make through the caller's browser.
type adminHandler struct {
	sup     *supervisor.Supervisor
	logsDir string
	load    func(paths ...string) ([]v1alpha1.Agent, error)
	mux     *http.ServeMux
	poll    time.Duration
	now     func() time.Time

	stopOnce sync.Once
	stop     chan struct{} // closed by stopFollowing
}

var _ http.Handler = (*adminHandler)(nil)

// newAdminHandler returns the admin endpoints for sup, whose data directory is dataDir. load,
// when not nil, reads the manifests `agentplane up` was started with when called without
// paths; POST /api/v1/apply?reload=true applies what it returns as the whole set of agents.
func newAdminHandler(sup *supervisor.Supervisor, dataDir string, load func(paths ...string) ([]v1alpha1.Agent, error)) *adminHandler {
	h := &adminHandler{
		sup:     sup,
		logsDir: filepath.Join(dataDir, "logs"),
		load:    load,
		mux:     http.NewServeMux(),
		poll:    logPollInterval,
		now:     time.Now,
		stop:    make(chan struct{}),
	}
	h.mux.HandleFunc("POST /api/v1/apply", h.serveApply)
	h.mux.HandleFunc("GET /api/v1/logs/{replica}", h.serveLogs)
	h.mux.HandleFunc("GET /api/v1/agents/{name}", h.serveDescribe)
	return h
}

// stopFollowing ends every followed log stream, and makes new ones end at once: a gateway
// draining for shutdown should not wait for them.
func (h *adminHandler) stopFollowing() { h.stopOnce.Do(func() { close(h.stop) }) }

func (h *adminHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := checkLocalCaller(r); err != nil {
		adminError(w, http.StatusForbidden, err.Error(), nil)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// checkLocalCaller refuses callers not on this machine, and requests that a web page could
// have made through a browser on it: one whose Host is not a loopback name (DNS rebinding) or
// that comes from a page of another origin.
func checkLocalCaller(r *http.Request) error {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil || !isLoopbackHost(host) {
		return errors.New("the admin API only answers callers on this machine (loopback)")
	}
	if !isLoopbackHost(hostOnly(r.Host)) {
		return fmt.Errorf("the admin API only answers requests addressed to a loopback host, not %q: use 127.0.0.1, [::1] or localhost", r.Host)
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || !isLoopbackHost(u.Hostname()) {
			return errors.New("the admin API does not answer requests from web pages")
		}
	}
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return errors.New("the admin API does not answer requests from web pages")
	}
	return nil
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// adminErrorBody is the JSON body of every error answer of the admin endpoints.
type adminErrorBody struct {
	Error string `json:"error"`
	// Diff is what a failed apply set out to do, when it got that far.
	Diff *supervisor.Diff `json:"diff,omitempty"`
}

func adminError(w http.ResponseWriter, code int, msg string, diff *supervisor.Diff) {
	adminJSON(w, code, adminErrorBody{Error: msg, Diff: diff})
}

func adminJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// serveApply applies the manifests of the request body. By default the agents in the body are
// added or changed and the others left alone; with ?prune=true the body is the whole set, and
// agents not in it are removed. ?reload=true (with an empty body) applies the manifests
// `agentplane up` was started with, as the whole set. It answers the supervisor.Diff once the
// change is done: rolling updates and drains included.
func (h *adminHandler) serveApply(w http.ResponseWriter, r *http.Request) {
	// A YAML content type is not one a web form can send, so a browser asks first (CORS) and
	// is refused.
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (ct != "application/yaml" && ct != "application/x-yaml") {
		adminError(w, http.StatusUnsupportedMediaType, "manifests must be sent as Content-Type application/yaml", nil)
		return
	}
	q := r.URL.Query()
	prune, err := queryBool(q, "prune")
	if err != nil {
		adminError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	reload, err := queryBool(q, "reload")
	if err != nil {
		adminError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, adminMaxApplyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			adminError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("manifests larger than %d bytes", adminMaxApplyBytes), nil)
			return
		}
		adminError(w, http.StatusBadRequest, "reading the manifests: "+err.Error(), nil)
		return
	}

	var agents []v1alpha1.Agent
	switch {
	case reload:
		if h.load == nil {
			adminError(w, http.StatusNotFound, "this agentplane cannot reload its manifests", nil)
			return
		}
		if len(data) > 0 {
			adminError(w, http.StatusBadRequest, "reload=true takes no manifests in the body", nil)
			return
		}
		if agents, err = h.load(); err != nil {
			adminError(w, http.StatusBadRequest, "invalid manifests:\n"+err.Error(), nil)
			return
		}
		prune = true
	default:
		if agents, err = manifest.Decode("request", data); err != nil {
			adminError(w, http.StatusBadRequest, "invalid manifests:\n"+err.Error(), nil)
			return
		}
		if len(agents) == 0 {
			adminError(w, http.StatusBadRequest, "no agents in the manifests", nil)
			return
		}
		seen := map[string]bool{}
		for _, a := range agents {
			if seen[a.Name] {
				adminError(w, http.StatusBadRequest, fmt.Sprintf("invalid manifests:\nagent %q is defined twice", a.Name), nil)
				return
			}
			seen[a.Name] = true
		}
	}

	// The change goes on when the client goes away: a rolling update left half done would
	// only have to be resumed.
	ctx := context.WithoutCancel(r.Context())
	diff, err := h.sup.Update(ctx, func(current []v1alpha1.Agent) ([]v1alpha1.Agent, error) {
		if !reload {
			keepManifestDirs(current, agents)
		}
		if prune {
			return agents, nil
		}
		return mergeAgents(current, agents), nil
	})
	switch {
	case err == nil:
		adminJSON(w, http.StatusOK, diff)
	case errors.Is(err, supervisor.ErrInvalid):
		adminError(w, http.StatusBadRequest, err.Error(), nil)
	case errors.Is(err, supervisor.ErrStopped):
		adminError(w, http.StatusServiceUnavailable, "agentplane is stopping", nil)
	default:
		adminError(w, http.StatusInternalServerError, err.Error(), &diff)
	}
}

// keepManifestDirs gives each agent of changes that does not say which directory its relative
// paths are relative to (v1alpha1.AnnotationManifestDir: manifests sent as YAML do not) the
// directory of the running agent of the same name, so that applying the file an agent was
// loaded from changes nothing. A new agent without one has the supervisor's working directory.
func keepManifestDirs(current, changes []v1alpha1.Agent) {
	dirs := map[string]string{}
	for _, a := range current {
		if d := a.Annotations[v1alpha1.AnnotationManifestDir]; d != "" {
			dirs[a.Name] = d
		}
	}
	for i := range changes {
		a := &changes[i]
		d, ok := dirs[a.Name]
		if !ok || a.Annotations[v1alpha1.AnnotationManifestDir] != "" {
			continue
		}
		if a.Annotations == nil {
			a.Annotations = map[string]string{}
		}
		a.Annotations[v1alpha1.AnnotationManifestDir] = d
	}
}

// mergeAgents returns current with every agent of changes replacing the one of the same name,
// or added.
func mergeAgents(current, changes []v1alpha1.Agent) []v1alpha1.Agent {
	out := make([]v1alpha1.Agent, 0, len(current)+len(changes))
	byName := map[string]int{}
	for _, a := range current {
		byName[a.Name] = len(out)
		out = append(out, a)
	}
	for _, a := range changes {
		if i, ok := byName[a.Name]; ok {
			out[i] = a
			continue
		}
		byName[a.Name] = len(out)
		out = append(out, a)
	}
	return out
}

func queryBool(q url.Values, name string) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("?%s=%q: must be true or false", name, v)
	}
	return b, nil
}

// replicaPattern is a replica's name: an agent name (a DNS-1035 label) and an index. Nothing
// else names a log file, so no request reaches outside the logs directory.
var replicaPattern = regexp.MustCompile(`^([a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)-(0|[1-9][0-9]{0,3})$`)

// splitReplica returns the agent of a replica name, and whether the name is valid.
func splitReplica(name string) (agent string, ok bool) {
	m := replicaPattern.FindStringSubmatch(name)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// serveLogs sends the log file of a replica: all of it, or its last ?tail=N lines; with
// ?follow=true it then sends lines as they are appended, until the client goes away.
func (h *adminHandler) serveLogs(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("replica")
	agent, ok := splitReplica(name)
	if !ok {
		adminError(w, http.StatusBadRequest, fmt.Sprintf("%q is not a replica name such as triage-0", name), nil)
		return
	}
	q := r.URL.Query()
	tail := -1
	if v := q.Get("tail"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > adminMaxTail {
			adminError(w, http.StatusBadRequest, fmt.Sprintf("?tail=%q: must be a number from 0 to %d", v, adminMaxTail), nil)
			return
		}
		tail = n
	}
	follow, err := queryBool(q, "follow")
	if err != nil {
		adminError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}

	path := filepath.Join(h.logsDir, agent, name+".log")
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			adminError(w, http.StatusNotFound, fmt.Sprintf("no log for replica %s", name), nil)
			return
		}
		adminError(w, http.StatusInternalServerError, fmt.Sprintf("cannot open the log of replica %s", name), nil)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		adminError(w, http.StatusInternalServerError, fmt.Sprintf("cannot read the log of replica %s", name), nil)
		return
	}
	off := int64(0)
	if tail >= 0 {
		if off, err = tailOffset(f, fi.Size(), tail); err != nil {
			adminError(w, http.StatusInternalServerError, fmt.Sprintf("cannot read the log of replica %s", name), nil)
			return
		}
	}

	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	n, err := io.Copy(w, io.NewSectionReader(f, off, fi.Size()-off))
	off += n
	if err != nil || !follow {
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	tick := time.NewTicker(h.poll)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-h.stop:
			return
		case <-tick.C:
		}
		fi, err := f.Stat()
		if err != nil {
			return
		}
		switch size := fi.Size(); {
		case size < off: // truncated: start over
			off = 0
		case size > off:
			n, err := io.Copy(w, io.NewSectionReader(f, off, size-off))
			off += n
			if err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
	}
}

// tailOffset returns where the last n lines of the first size bytes of f begin. A last line
// without a newline counts as a line.
func tailOffset(f io.ReaderAt, size int64, n int) (int64, error) {
	if n == 0 {
		return size, nil
	}
	buf := make([]byte, 64<<10)
	for pos := size; pos > 0; {
		chunk := min(int64(len(buf)), pos)
		pos -= chunk
		if _, err := f.ReadAt(buf[:chunk], pos); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		for i := chunk - 1; i >= 0; i-- {
			if buf[i] != '\n' || pos+i == size-1 { // the newline that ends the last line
				continue
			}
			if n--; n == 0 {
				return pos + i + 1, nil
			}
		}
	}
	return 0, nil
}

// AgentDescription is the answer of GET /api/v1/agents/{name}.
type AgentDescription struct {
	// Agent is the agent as applied, defaulted, with its status computed from its replicas.
	Agent v1alpha1.Agent `json:"agent"`
	// Replicas are the agent's replicas, as the supervisor reports them.
	Replicas []discovery.Endpoint `json:"replicas"`
}

func (h *adminHandler) serveDescribe(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if msgs := validation.IsDNS1035Label(name); len(msgs) > 0 {
		adminError(w, http.StatusBadRequest, fmt.Sprintf("%q is not an agent name: %s", name, strings.Join(msgs, "; ")), nil)
		return
	}
	def, ok := h.sup.Agent(name)
	if !ok {
		adminError(w, http.StatusNotFound, fmt.Sprintf("no agent %q", name), nil)
		return
	}
	st, _ := discovery.Lookup(h.sup.Snapshot(), name)
	def.Status = agentStatus(st, h.sup.Outdated(name), h.now())
	replicas := st.Endpoints
	if replicas == nil {
		replicas = []discovery.Endpoint{}
	}
	adminJSON(w, http.StatusOK, AgentDescription{Agent: def, Replicas: replicas})
}

// failedBefore reports whether e is starting again after a run that failed: it is in a crash
// loop between two tries.
func failedBefore(e discovery.Endpoint) bool {
	if e.State != discovery.StateStarting && e.State != discovery.StatePending {
		return false
	}
	return e.Restarts > 0 && e.Reason != "" && e.Reason != discovery.ReasonStartupProbeFailing
}

// replicaWhy names a replica and, when it has one, the reason it is not ready.
func replicaWhy(e discovery.Endpoint) string {
	switch {
	case e.Reason == "":
		return e.Name
	case e.Message == "":
		return e.Name + " (" + e.Reason + ")"
	}
	return e.Name + " (" + e.Reason + ": " + e.Message + ")"
}

// agentStatus computes an agent's status from its replicas; outdated are the replicas that
// still run an older spec. The conditions' transition time is the last change of a replica's
// state, as the supervisor keeps no history of conditions.
func agentStatus(a discovery.Agent, outdated []string, now time.Time) v1alpha1.AgentStatus {
	var (
		ready                          = a.ReadyCount()
		starting, terminating, looping []string
		unready                        []string
		last                           time.Time
	)
	for _, e := range a.Endpoints {
		if e.Since.After(last) {
			last = e.Since
		}
		switch {
		case e.State == discovery.StateTerminating:
			terminating = append(terminating, e.Name)
		case e.State == discovery.StateCrashLoopBackOff || failedBefore(e):
			looping = append(looping, replicaWhy(e))
		case e.State == discovery.StatePending || e.State == discovery.StateStarting:
			starting = append(starting, replicaWhy(e))
		case e.State == discovery.StateRunning && !e.Ready:
			unready = append(unready, replicaWhy(e))
		}
	}
	if last.IsZero() {
		last = now
	}
	cond := func(t string, ok bool, reason, msg string) metav1.Condition {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		return metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg, LastTransitionTime: metav1.NewTime(last)}
	}
	readyMsg := fmt.Sprintf("%d/%d replicas ready", ready, a.Desired)
	var conds []metav1.Condition
	if ready >= a.Desired {
		conds = append(conds, cond(v1alpha1.ConditionReady, true, "AllReplicasReady", readyMsg))
	} else {
		conds = append(conds, cond(v1alpha1.ConditionReady, false, "ReplicasNotReady", readyMsg))
	}
	switch {
	case ready > 0:
		conds = append(conds, cond(v1alpha1.ConditionAvailable, true, "ReplicaAvailable", readyMsg))
	case a.Desired == 0:
		conds = append(conds, cond(v1alpha1.ConditionAvailable, false, "ScaledToZero", "no replicas are desired"))
	default:
		conds = append(conds, cond(v1alpha1.ConditionAvailable, false, "NoReplicaReady", "no replica is ready: tasks wait or fail"))
	}
	var progress []string
	if len(starting) > 0 {
		progress = append(progress, "starting "+strings.Join(starting, "; "))
	}
	if len(terminating) > 0 {
		progress = append(progress, "stopping "+strings.Join(terminating, ", "))
	}
	if n := len(a.Endpoints) - len(terminating); n != a.Desired {
		progress = append(progress, fmt.Sprintf("%d replicas, %d desired", n, a.Desired))
	}
	switch {
	case len(progress) > 0:
		conds = append(conds, cond(v1alpha1.ConditionProgressing, true, "ReplicasChanging", strings.Join(progress, "; ")))
	case len(outdated) > 0:
		conds = append(conds, cond(v1alpha1.ConditionProgressing, false, "RolloutStalled",
			"a rolling update stopped; "+strings.Join(outdated, ", ")+" run an older spec: apply again to resume"))
	default:
		conds = append(conds, cond(v1alpha1.ConditionProgressing, false, "Complete", "no replica is being started or stopped"))
	}
	var degraded []string
	reason := "AsExpected"
	if len(unready) > 0 {
		degraded = append(degraded, "failing readiness: "+strings.Join(unready, "; "))
		reason = "ReadinessFailing"
	}
	if len(looping) > 0 {
		degraded = append(degraded, "crash-looping: "+strings.Join(looping, "; "))
		reason = "CrashLoopBackOff"
	}
	if len(degraded) > 0 {
		conds = append(conds, cond(v1alpha1.ConditionDegraded, true, reason, strings.Join(degraded, "; ")))
	} else {
		conds = append(conds, cond(v1alpha1.ConditionDegraded, false, reason, "no replica is crash-looping or failing probes"))
	}
	st := v1alpha1.AgentStatus{Replicas: int32(len(a.Endpoints)), ReadyReplicas: int32(ready), Conditions: conds}
	if a.Autoscaled {
		st.Autoscaling = &v1alpha1.AutoscalingStatus{DesiredReplicas: int32(a.Desired), Reason: a.ScaleReason}
		if !a.ScaledAt.IsZero() {
			t := metav1.NewTime(a.ScaledAt)
			st.Autoscaling.LastScaleTime = &t
		}
	}
	return st
}
