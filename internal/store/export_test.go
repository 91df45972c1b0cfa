package store

import "time"

// FastTimings shortens the consumer's timings for tests: ack wait, first retry delay and the
// longest pull request.
func FastTimings(o Options, ackWait, retryDelay, pollWait time.Duration) Options {
	o.ackWait, o.retryDelay, o.pollWait = ackWait, retryDelay, pollWait
	return o
}

// EncodeKey and DecodeKey expose the key encoding to the tests.
var (
	EncodeKey = encodeKey
	DecodeKey = decodeKey
)

// SyncAlwaysForTest reports the embedded server's SyncAlways setting, and whether there is one.
func (j *JetStream) SyncAlwaysForTest() (bool, bool) {
	if j.srv == nil {
		return false, false
	}
	return j.srv.JetStreamConfig().SyncAlways, true
}
