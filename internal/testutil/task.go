package testutil

import "encoding/json"

// TaskIDAndState reads a task's id and state from a JSON-RPC result of either dialect: a v1.0
// {"task": {...}} or a bare v0.3 Task.
func TaskIDAndState(result json.RawMessage) (id, state string, err error) {
	var v struct {
		Task *struct {
			ID     string `json:"id"`
			Status struct {
				State string `json:"state"`
			} `json:"status"`
		} `json:"task"`
		ID     string `json:"id"`
		Status struct {
			State string `json:"state"`
		} `json:"status"`
	}
	if err := json.Unmarshal(result, &v); err != nil {
		return "", "", err
	}
	if v.Task != nil {
		return v.Task.ID, v.Task.Status.State, nil
	}
	return v.ID, v.Status.State, nil
}
