package admission

import "fmt"

// Priority is a task's class in the queue: Urgent before Normal before Batch. The zero value is
// Normal.
type Priority int8

// Priorities.
const (
	Batch  Priority = -1
	Normal Priority = 0
	Urgent Priority = 1
)

const numClasses = 3

// class is the index of p's class, 0 first; values out of range count as the nearest class.
func (p Priority) class() int { return int(Urgent - min(max(p, Batch), Urgent)) }

func classPriority(ci int) Priority { return Urgent - Priority(ci) }

// String returns "urgent", "normal" or "batch".
func (p Priority) String() string {
	switch classPriority(p.class()) {
	case Urgent:
		return "urgent"
	case Batch:
		return "batch"
	}
	return "normal"
}

// ParsePriority parses "urgent", "normal" or "batch"; "" is Normal.
func ParsePriority(s string) (Priority, error) {
	switch s {
	case "urgent":
		return Urgent, nil
	case "normal", "":
		return Normal, nil
	case "batch":
		return Batch, nil
	}
	return Normal, fmt.Errorf("priority %q: want urgent, normal or batch", s)
}
