/** Payloads recorded from the real peers, trimmed of fields Orrery does not read. */
// Recorded from prometheus-alertmanager 0.25.0 (webhook_configs, send_resolved: true).
export const AM_FIRING = {
  receiver: "orrery",
  status: "firing",
  alerts: [
    {
      status: "firing",
      labels: { alertname: "PostgresDown", instance: "db1:5432", job: "postgres", severity: "critical" },
      annotations: { summary: "pg down" },
      startsAt: "2026-11-22T02:42:22.944Z",
      endsAt: "0001-01-01T00:00:00Z",
      generatorURL: "http://prom:9090/graph",
      fingerprint: "bbf630d9c014094b",
    },
  ],
  groupLabels: { alertname: "PostgresDown", instance: "db1:5432" },
  commonLabels: { alertname: "PostgresDown", instance: "db1:5432", job: "postgres", severity: "critical" },
  commonAnnotations: { summary: "pg down" },
  externalURL: "http://vm:19093",
  version: "4",
  groupKey: '{}:{alertname="PostgresDown", instance="db1:5432"}',
  truncatedAlerts: 0,
};
export const AM_RESOLVED = {
  ...AM_FIRING,
  status: "resolved",
  alerts: [{ ...AM_FIRING.alerts[0]!, status: "resolved", endsAt: "2026-11-22T02:43:24.45Z" }],
};

// Recorded from icinga2 r2.13.6 POST /v1/events (types CheckResult, StateChange, Acknowledgement*, Downtime*).
export const IC_SERVICE_CRITICAL = {"acknowledgement": false, "check_result": {"active": false, "check_source": "testnode", "command": null, "execution_end": 1795315423.841335, "execution_start": 1795315423.841335, "exit_status": 0, "output": "CRITICAL - refused", "performance_data": null, "previous_hard_state": 0, "schedule_end": 1795315423.841335, "schedule_start": 1795315423.841335, "scheduling_source": "testnode", "state": 2, "ttl": 0, "type": "CheckResult", "vars_after": {"attempt": 1, "reachable": true, "state": 2, "state_type": 1}, "vars_before": {"attempt": 1, "reachable": true, "state": 0, "state_type": 1}}, "downtime_depth": 0, "host": "db1", "service": "PostgreSQL", "state": 2, "state_type": 1, "timestamp": 1795315423.841456, "type": "StateChange"};
export const IC_CHECKRESULT_CRITICAL = { ...IC_SERVICE_CRITICAL, type: "CheckResult", timestamp: 1795315423.841377, state: undefined, state_type: undefined };
export const IC_ACK_SET = {"acknowledgement_type": 1, "author": "ops", "comment": "looking", "expiry": 0, "host": "db1", "notify": false, "persistent": false, "service": "PostgreSQL", "state": 2, "state_type": 1, "timestamp": 1795315424.862067, "type": "AcknowledgementSet"};
export const IC_ACK_CLEARED = {"acknowledgement_type": 0, "host": "db1", "service": "PostgreSQL", "state": 2, "state_type": 1, "timestamp": 1795315425.919346, "type": "AcknowledgementCleared"};
export const IC_DOWNTIME_STARTED = {"downtime": {"__name": "db1!PostgreSQL!58975647-c3f9-4bdd-8ee1-fe5edd0bc037", "author": "ops", "comment": "maint", "duration": 0, "end_time": 1795316026, "entry_time": 1795315426.980451, "fixed": true, "host_name": "db1", "name": "58975647-c3f9-4bdd-8ee1-fe5edd0bc037", "remove_time": 0, "service_name": "PostgreSQL", "start_time": 1795315426, "trigger_time": 0, "type": "Downtime"}, "timestamp": 1795315426.982576, "type": "DowntimeStarted"};
export const IC_DOWNTIME_REMOVED = {"downtime": {"__name": "db1!PostgreSQL!58975647-c3f9-4bdd-8ee1-fe5edd0bc037", "author": "ops", "comment": "maint", "duration": 0, "end_time": 1795316026, "entry_time": 1795315426.980451, "fixed": true, "host_name": "db1", "name": "58975647-c3f9-4bdd-8ee1-fe5edd0bc037", "remove_time": 1795315429.039606, "service_name": "PostgreSQL", "start_time": 1795315426, "trigger_time": 1795315426.980451, "type": "Downtime"}, "timestamp": 1795315429.039644, "type": "DowntimeRemoved"};
export const IC_HOST_DOWN = {"acknowledgement": false, "check_result": {"active": false, "check_source": "testnode", "command": null, "execution_end": 1795315430.103138, "execution_start": 1795315430.103138, "exit_status": 0, "output": "DOWN", "performance_data": null, "previous_hard_state": 99, "schedule_end": 1795315430.103138, "schedule_start": 1795315430.103138, "scheduling_source": "testnode", "state": 2, "ttl": 0, "type": "CheckResult", "vars_after": {"attempt": 2, "reachable": true, "state": 2, "state_type": 0}, "vars_before": null}, "downtime_depth": 0, "host": "db1", "state": 1, "state_type": 0, "timestamp": 1795315430.103322, "type": "StateChange"};
// GET /v1/objects/services result
export const IC_SERVICE_OBJECT_OK = {"attrs": {"acknowledgement": 0, "display_name": "PostgreSQL", "downtime_depth": 0, "host_name": "db1", "last_check_result": {"active": false, "check_source": "testnode", "command": null, "execution_end": 1795315431.163855, "execution_start": 1795315431.163855, "exit_status": 0, "output": "OK again", "performance_data": null, "previous_hard_state": 2, "schedule_end": 1795315431.163855, "schedule_start": 1795315431.163855, "scheduling_source": "testnode", "state": 0, "ttl": 0, "type": "CheckResult", "vars_after": {"attempt": 1, "reachable": true, "state": 0, "state_type": 1}, "vars_before": {"attempt": 1, "reachable": true, "state": 2, "state_type": 1}}, "last_state_change": 1795315431.163855, "name": "PostgreSQL", "state": 0, "state_type": 1}, "joins": {}, "meta": {}, "name": "db1!PostgreSQL", "type": "Service"};
