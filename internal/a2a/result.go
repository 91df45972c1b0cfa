package a2a

import "encoding/json"

// ResultTaskID finds the task a JSON-RPC result or stream event is about, in either dialect:
// a Task (v0.3 kind "task", or v1.0 {"task": {...}}), a status or artifact update (taskId), or a
// Message that belongs to a task. It returns "" when the result names no task, as for a plain
// Message reply.
func ResultTaskID(result json.RawMessage) string {
	var obj map[string]json.RawMessage
	if json.Unmarshal(result, &obj) != nil {
		return ""
	}
	if id := stringField(obj, "taskId"); id != "" {
		return id
	}
	if _, isTask := obj["status"]; isTask {
		if id := stringField(obj, "id"); id != "" {
			return id
		}
	}
	for _, k := range []string{"task", "statusUpdate", "artifactUpdate", "message"} {
		if inner, ok := obj[k]; ok {
			if id := ResultTaskID(inner); id != "" {
				return id
			}
		}
	}
	return ""
}

func stringField(obj map[string]json.RawMessage, k string) string {
	var s string
	if v, ok := obj[k]; ok && json.Unmarshal(v, &s) == nil {
		return s
	}
	return ""
}
