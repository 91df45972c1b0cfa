package a2a

// Dialect is the A2A protocol version a method name belongs to.
type Dialect string

// Dialects the gateway speaks.
const (
	V1  Dialect = "1.0"
	V03 Dialect = "0.3"
)

// Kind is what a method does, whatever its dialect.
type Kind int

// Method kinds.
const (
	KindOther      Kind = iota // known to A2A but not routed specially
	KindSend                   // send a message, answer once
	KindStream                 // send a message, answer with an SSE stream
	KindGetTask                // read a task
	KindCancel                 // cancel a task
	KindSubscribe              // re-attach to a task's SSE stream
	KindCard                   // the authenticated extended agent card
	KindList                   // list the caller's tasks
	KindPushSet                // create (or replace) a task's push notification config
	KindPushGet                // read one push notification config of a task
	KindPushList               // list a task's push notification configs
	KindPushDelete             // delete one push notification config of a task
)

// Method describes one JSON-RPC method name.
type Method struct {
	Name    string
	Dialect Dialect
	Kind    Kind
}

// Streaming reports whether the method answers with a server-sent event stream.
func (m Method) Streaming() bool { return m.Kind == KindStream || m.Kind == KindSubscribe }

// NewTask reports whether the method starts work on an agent (and so needs a replica with room).
func (m Method) NewTask() bool { return m.Kind == KindSend || m.Kind == KindStream }

// PushConfig reports whether the method reads or changes a task's push notification configs.
func (m Method) PushConfig() bool {
	return m.Kind == KindPushSet || m.Kind == KindPushGet || m.Kind == KindPushList || m.Kind == KindPushDelete
}

// TaskScoped reports whether the method names an existing task in params.id.
func (m Method) TaskScoped() bool {
	return m.Kind == KindGetTask || m.Kind == KindCancel || m.Kind == KindSubscribe
}

var methods = map[string]Method{}

func init() {
	for _, m := range []Method{
		{"SendMessage", V1, KindSend},
		{"SendStreamingMessage", V1, KindStream},
		{"GetTask", V1, KindGetTask},
		{"CancelTask", V1, KindCancel},
		{"SubscribeToTask", V1, KindSubscribe},
		{"ListTasks", V1, KindList},
		{"GetExtendedAgentCard", V1, KindCard},
		{"CreateTaskPushNotificationConfig", V1, KindPushSet},
		{"GetTaskPushNotificationConfig", V1, KindPushGet},
		{"ListTaskPushNotificationConfigs", V1, KindPushList},
		{"DeleteTaskPushNotificationConfig", V1, KindPushDelete},

		{"message/send", V03, KindSend},
		{"message/stream", V03, KindStream},
		{"tasks/get", V03, KindGetTask},
		{"tasks/cancel", V03, KindCancel},
		{"tasks/resubscribe", V03, KindSubscribe},
		{"tasks/list", V03, KindList},
		{"agent/getAuthenticatedExtendedCard", V03, KindCard},
		{"tasks/pushNotificationConfig/set", V03, KindPushSet},
		{"tasks/pushNotificationConfig/get", V03, KindPushGet},
		{"tasks/pushNotificationConfig/list", V03, KindPushList},
		{"tasks/pushNotificationConfig/delete", V03, KindPushDelete},
	} {
		methods[m.Name] = m
	}
}

// LookupMethod finds a method by its JSON-RPC name, in either dialect.
func LookupMethod(name string) (Method, bool) {
	m, ok := methods[name]
	return m, ok
}
