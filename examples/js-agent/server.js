// A clinic intake agent written with the official A2A JavaScript SDK (@a2a-js/sdk), run by
// `agentplane up`. It reads a patient's free-text request, streams two status updates while it
// "works", and answers with a structured intake summary: the reason for the visit, an urgency and
// the red flags that decided it. Nothing clinical happens here: it is a demonstration that any
// A2A server works behind agentplane, not only the Go ones.
//
// The process contract of agentplane's supervisor (internal/supervisor):
//   - listen on AGENTPLANE_LISTEN_HOST (127.0.0.1: replicas are reached only through the
//     gateway) and PORT, both set for each replica;
//   - serve the agent card at /.well-known/agent-card.json: the supervisor's default startup,
//     readiness and liveness probes GET it, and the gateway reads it to find where the agent
//     takes JSON-RPC for each A2A dialect;
//   - on SIGTERM, stop accepting and finish the tasks in flight, then exit; the supervisor sends
//     SIGKILL after its grace period.
//
// The agent never logs a message's text: it may hold a patient's name or condition.

import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

import express from 'express';
import { AGENT_CARD_PATH, Role, TaskState } from '@a2a-js/sdk';
import { AgentEvent, DefaultRequestHandler, InMemoryTaskStore } from '@a2a-js/sdk/server';
import { agentCardHandler, jsonRpcHandler, UserBuilder } from '@a2a-js/sdk/server/express';

const host = process.env.AGENTPLANE_LISTEN_HOST || '127.0.0.1';
const port = Number(process.env.PORT || 8080);
const agentName = process.env.AGENTPLANE_AGENT || 'intake';
const replica = process.env.AGENTPLANE_REPLICA || '0';
// How long each of the agent's two working steps takes, in milliseconds.
const stepMs = Number(process.env.INTAKE_STEP_MS || 150);
const rpcPath = '/a2a/jsonrpc';

// Words that make a request urgent. A toy list: this is an example, not triage.
const redFlags = ['chest pain', 'shortness of breath', 'bleeding', 'fainted', 'unconscious', 'seizure', 'stroke'];

function log(msg, fields = {}) {
  console.log(JSON.stringify({ time: new Date().toISOString(), msg, agent: agentName, replica, ...fields }));
}

// The card names one JSON-RPC endpoint twice: for A2A 1.0 and for 0.3. The gateway reads
// supportedInterfaces to learn where each dialect goes; the SDK checks the A2A-Version header of
// every request against the versions listed here. Asked without that header (as the probes and
// the gateway ask), the SDK serves it in the 0.3 shape, top-level url included, with
// supportedInterfaces kept: a card that clients of both versions can read.
const card = {
  name: 'Clinic intake (JavaScript)',
  description: 'Turns a patient request into a structured intake summary with an urgency.',
  supportedInterfaces: [
    { url: `http://${host}:${port}${rpcPath}`, protocolBinding: 'JSONRPC', protocolVersion: '1.0', tenant: '' },
    { url: `http://${host}:${port}${rpcPath}`, protocolBinding: 'JSONRPC', protocolVersion: '0.3', tenant: '' },
  ],
  provider: { organization: 'agentplane examples', url: 'https://github.com/agentplane/agentplane' },
  version: '0.1.0',
  capabilities: { streaming: true, pushNotifications: false, extensions: [], extendedAgentCard: false },
  securitySchemes: {},
  securityRequirements: [],
  defaultInputModes: ['text/plain'],
  defaultOutputModes: ['text/plain', 'application/json'],
  skills: [
    {
      id: 'intake-summary',
      name: 'Intake summary',
      description: 'Summarises why the patient is coming and flags what needs a clinician now.',
      tags: ['clinic', 'intake'],
      examples: ['I have had chest pain since this morning', 'I need a refill of my inhaler'],
      inputModes: ['text/plain'],
      outputModes: ['text/plain', 'application/json'],
      securityRequirements: [],
    },
  ],
  signatures: [],
};

const textPart = (text) => ({ content: { $case: 'text', value: text }, metadata: undefined, filename: '', mediaType: 'text/plain' });
const dataPart = (value) => ({ content: { $case: 'data', value }, metadata: undefined, filename: '', mediaType: 'application/json' });

function agentMessage(taskId, contextId, text) {
  return {
    messageId: randomUUID(), role: Role.ROLE_AGENT, parts: [textPart(text)], taskId, contextId,
    metadata: undefined, extensions: [], referenceTaskIds: [],
  };
}

function status(taskId, contextId, state, text) {
  return AgentEvent.statusUpdate({
    taskId, contextId, metadata: undefined,
    status: { state, timestamp: new Date().toISOString(), message: text ? agentMessage(taskId, contextId, text) : undefined },
  });
}

// summarise is the agent's whole "intelligence": a reason for the visit, the red flags found in
// it and the urgency they decide.
function summarise(text) {
  const reason = text.trim().replace(/\s+/g, ' ');
  const lower = reason.toLowerCase();
  const flags = redFlags.filter((f) => lower.includes(f));
  return { reason, urgency: flags.length > 0 ? 'urgent' : 'routine', redFlags: flags, words: reason ? reason.split(' ').length : 0 };
}

class IntakeExecutor {
  // The tasks at work, each with the controller that cancels it.
  running = new Map();

  async cancelTask(taskId) {
    // execute stops at once (a step's wait is cut short) and ends the task as canceled.
    this.running.get(taskId)?.abort();
  }

  async execute(ctx, bus) {
    const { taskId, contextId, userMessage } = ctx;
    const text = userMessage.parts
      .map((p) => (p.content?.$case === 'text' ? p.content.value : ''))
      .filter(Boolean)
      .join('\n');
    const canceled = new AbortController();
    this.running.set(taskId, canceled);
    log('task started', { taskId });
    try {
      if (!ctx.task) {
        bus.publish(AgentEvent.task({
          id: taskId, contextId, artifacts: [], history: [userMessage], metadata: undefined,
          status: { state: TaskState.TASK_STATE_SUBMITTED, timestamp: new Date().toISOString(), message: undefined },
        }));
      }
      try {
        for (const step of ['Reading the request', 'Checking for red flags']) {
          canceled.signal.throwIfAborted();
          bus.publish(status(taskId, contextId, TaskState.TASK_STATE_WORKING, step));
          await sleep(stepMs, undefined, { signal: canceled.signal });
        }
      } catch (err) {
        if (!canceled.signal.aborted) throw err;
        bus.publish(status(taskId, contextId, TaskState.TASK_STATE_CANCELED, 'Intake canceled.'));
        log('task canceled', { taskId });
        return;
      }
      const s = summarise(text);
      const line = `Intake summary: urgency ${s.urgency}` +
        (s.redFlags.length ? ` (red flags: ${s.redFlags.join(', ')})` : '') +
        `. Reason for visit: ${s.reason || '(none given)'}`;
      bus.publish(AgentEvent.artifactUpdate({
        taskId, contextId, append: false, lastChunk: true, metadata: undefined,
        artifact: {
          artifactId: 'intake-summary', name: 'intake-summary', description: 'Structured intake summary',
          parts: [textPart(line), dataPart(s)], metadata: undefined, extensions: [],
        },
      }));
      bus.publish(status(taskId, contextId, TaskState.TASK_STATE_COMPLETED, line));
      log('task completed', { taskId, urgency: s.urgency });
    } finally {
      // The request handler settles the bus when execute returns.
      this.running.delete(taskId);
    }
  }
}

const requestHandler = new DefaultRequestHandler(card, new InMemoryTaskStore(), new IntakeExecutor());

const app = express();
app.use(`/${AGENT_CARD_PATH}`, agentCardHandler({ agentCardProvider: requestHandler, legacyCompat: { enabled: true } }));
app.use(rpcPath, jsonRpcHandler({ requestHandler, userBuilder: UserBuilder.noAuthentication, legacyCompat: { enabled: true } }));

const server = app.listen(port, host, () => log('listening', { url: `http://${host}:${port}`, rpc: rpcPath }));
server.on('error', (err) => {
  log('cannot listen', { err: String(err) });
  process.exit(1);
});

// SIGTERM (the supervisor's stop) and SIGINT: stop accepting, let requests in flight finish, exit.
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.once(sig, () => {
    log('stopping', { signal: sig });
    server.close(() => process.exit(0));
    server.closeIdleConnections();
  });
}
