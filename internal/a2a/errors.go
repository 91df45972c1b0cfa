package a2a

import (
	"encoding/json"
	"fmt"
)

// JSON-RPC 2.0 and A2A error codes.
const (
	CodeParseError              = -32700
	CodeInvalidRequest          = -32600
	CodeMethodNotFound          = -32601
	CodeInvalidParams           = -32602
	CodeInternalError           = -32603
	CodeTaskNotFound            = -32001
	CodeTaskNotCancelable       = -32002
	CodePushNotSupported        = -32003
	CodeUnsupportedOp           = -32004
	CodeContentTypeNotSupported = -32005
	CodeInvalidAgentResponse    = -32006
	// Codes in the implementation-defined server error range (-32000 to -32099) that A2A leaves free.
	CodeAgentNotFound    = -32050 // no such agent behind this gateway
	CodeAgentUnavailable = -32051 // the agent has no ready replica, or every attempt failed
	CodeRequestTooLarge  = -32052 // the body is over the gateway's limit
)

// Error is a JSON-RPC error object.
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

func (e *Error) Error() string { return fmt.Sprintf("a2a error %d: %s", e.Code, e.Message) }

// Errorf makes an Error with a formatted message.
func Errorf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Response is a JSON-RPC response envelope.
type Response struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *Error          `json:"error,omitempty"`
}

// ErrorResponse encodes a JSON-RPC error response for request id (null when id is empty).
func ErrorResponse(id json.RawMessage, e *Error) []byte {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	b, err := json.Marshal(Response{JSONRPC: Version, ID: id, Error: e})
	if err != nil { // only if Data cannot be encoded
		b, _ = json.Marshal(Response{JSONRPC: Version, ID: id, Error: &Error{Code: e.Code, Message: e.Message}})
	}
	return b
}
